using System.Buffers.Binary;
using System.Text;

namespace Diffusion.Platform;

/// <summary>
/// Reads and edits the version requirements (<c>.gnu.version_r</c>, "verneed") of a 64-bit little-endian ELF
/// shared library. Used for one thing: marking a version requirement weak (VER_FLG_WEAK), so that glibc's loader
/// accepts an older libstdc++ that lacks a version whose only symbol is a marker (see <see cref="TorchNative"/>).
/// </summary>
public static class ElfVersionNeeds
{
    const uint ShtGnuVerneed = 0x6ffffffe;
    /// <summary>VER_FLG_WEAK from elf.h: "weak version identifier".</summary>
    public const ushort VerFlgWeak = 0x2;

    /// <summary>One required version: the library it comes from, its name and its flags.</summary>
    public readonly record struct Requirement(string File, string Version, ushort Flags, int FlagsOffset)
    {
        public bool IsWeak => (Flags & VerFlgWeak) != 0;
    }

    /// <summary>Lists every version requirement of an ELF64 LE image.</summary>
    public static List<Requirement> Read(ReadOnlySpan<byte> elf)
    {
        if (elf.Length < 64 || elf[0] != 0x7f || elf[1] != (byte)'E' || elf[2] != (byte)'L' || elf[3] != (byte)'F')
            throw new InvalidDataException("not an ELF file (bad magic number)");
        if (elf[4] != 2 || elf[5] != 1)
            throw new InvalidDataException("only 64-bit little-endian ELF files are supported");

        ulong shoff = U64(elf, 0x28);
        int shentsize = U16(elf, 0x3A), shnum = U16(elf, 0x3C);
        if (shentsize < 64 || shoff + (ulong)shentsize * (ulong)shnum > (ulong)elf.Length)
            throw new InvalidDataException("ELF section header table lies outside the file");

        var result = new List<Requirement>();
        for (int i = 0; i < shnum; i++)
        {
            int sh = checked((int)shoff + i * shentsize);
            if (U32(elf, sh + 4) != ShtGnuVerneed) continue;
            int offset = checked((int)U64(elf, sh + 24));
            int count = (int)U32(elf, sh + 44);                       // sh_info: number of Verneed entries
            int link = (int)U32(elf, sh + 40);                        // sh_link: the string table
            int strtab = checked((int)U64(elf, checked((int)shoff + link * shentsize) + 24));

            int vn = offset;
            for (int n = 0; n < count; n++)
            {
                int cnt = U16(elf, vn + 2);
                string file = CString(elf, strtab + (int)U32(elf, vn + 4));
                int aux = vn + (int)U32(elf, vn + 8);
                for (int a = 0; a < cnt; a++)
                {
                    ushort flags = U16(elf, aux + 4);
                    string name = CString(elf, strtab + (int)U32(elf, aux + 8));
                    result.Add(new Requirement(file, name, flags, aux + 4));
                    uint next = U32(elf, aux + 12);
                    if (next == 0) break;
                    aux += (int)next;
                }
                uint vnNext = U32(elf, vn + 12);
                if (vnNext == 0) break;
                vn += (int)vnNext;
            }
        }
        return result;
    }

    /// <summary>
    /// Sets VER_FLG_WEAK on the requirement named <paramref name="version"/>. Returns false if the image has no
    /// such requirement. Idempotent.
    /// </summary>
    public static bool MarkWeak(Span<byte> elf, string version)
    {
        bool found = false;
        foreach (var r in Read(elf))
        {
            if (r.Version != version) continue;
            BinaryPrimitives.WriteUInt16LittleEndian(elf.Slice(r.FlagsOffset, 2), (ushort)(r.Flags | VerFlgWeak));
            found = true;
        }
        return found;
    }

    static ushort U16(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt16LittleEndian(Bounded(b, o, 2));
    static uint U32(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt32LittleEndian(Bounded(b, o, 4));
    static ulong U64(ReadOnlySpan<byte> b, int o) => BinaryPrimitives.ReadUInt64LittleEndian(Bounded(b, o, 8));

    static ReadOnlySpan<byte> Bounded(ReadOnlySpan<byte> b, int o, int n) =>
        o >= 0 && o + n <= b.Length ? b.Slice(o, n) : throw new InvalidDataException($"ELF offset {o} lies outside the file");

    static string CString(ReadOnlySpan<byte> b, int o)
    {
        var rest = Bounded(b, o, 1).Length > 0 ? b[o..] : default;
        int end = rest.IndexOf((byte)0);
        if (end < 0) throw new InvalidDataException("unterminated ELF string");
        return Encoding.ASCII.GetString(rest[..end]);
    }
}
