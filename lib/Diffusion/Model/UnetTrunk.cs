using static TorchSharp.torch.nn;

namespace Diffusion.Model;

/// <summary>
/// The parts every course U-Net has (<see cref="Unet"/> and the text-conditioned <c>Diffusion.TextToImage.TextUnet</c>) and the
/// walk through them: init_conv, the time MLP, the conditioning added to the time embedding (class embedding or pooled
/// text; optional), the down levels, mid_block1 → the middle's attention → mid_block2, the up levels, the final block
/// and the 1×1 output convolution. Built in that order (so the same seed draws the same initial weights) and registered in
/// its owner under the annotated notebook's names, in the notebook's order: init_conv, time_mlp, the conditioning, downs,
/// ups, mid_block1, mid_block2, the middle, final_res_block, final_conv. The owner disposes the parts (they are its modules).
/// </summary>
/// <typeparam name="TLevel">The owner's resolution level (two blocks, attention, maybe more, the change of resolution).</typeparam>
/// <typeparam name="TCondition">What adds the condition to the time embedding.</typeparam>
/// <typeparam name="TMiddle">The attention between the two middle blocks.</typeparam>
public sealed class UnetTrunk<TLevel, TCondition, TMiddle>
    where TLevel : Module, IUnetLevel where TCondition : Module where TMiddle : Module
{
    public PointwiseConv2d InitConv { get; }
    public Sequential TimeMlp { get; }
    /// <summary>The conditioning module, or null for an unconditional network.</summary>
    public TCondition? Condition { get; }
    public ModuleList<TLevel> Downs { get; } = new();
    public TimeBlock MidBlock1 { get; }
    public TMiddle Middle { get; }
    public TimeBlock MidBlock2 { get; }
    public ModuleList<TLevel> Ups { get; } = new();
    public TimeBlock FinalBlock { get; }
    public PointwiseConv2d FinalConv { get; }

    /// <param name="condition">Builds the conditioning (null: none).</param>
    /// <param name="level">Builds level <c>i</c> of the down path (<c>down</c> true) or the up path.</param>
    /// <param name="middle">Builds the middle's attention at <see cref="UnetLayout.MidDim"/> channels.</param>
    public UnetTrunk(UnetLayout layout, Func<TCondition?> condition, Func<int, bool, TLevel> level, Func<int, TMiddle> middle)
    {
        InitConv = layout.InitConv();
        TimeMlp = layout.TimeMlp();
        Condition = condition();
        for (int i = 0; i < layout.Levels; i++) Downs.Add(level(i, true));
        MidBlock1 = layout.MidBlock();
        Middle = middle(layout.MidDim);
        MidBlock2 = layout.MidBlock();
        for (int i = layout.Levels - 1; i >= 0; i--) Ups.Add(level(i, false));
        FinalBlock = layout.FinalBlock();
        FinalConv = layout.FinalConv();
    }

    /// <summary>Registers the parts in <paramref name="owner"/> under the annotated notebook's names and order.</summary>
    public void Register(Module owner, string conditionName, string middleName)
    {
        owner.register_module("init_conv", InitConv);
        owner.register_module("time_mlp", TimeMlp);
        if (Condition is not null) owner.register_module(conditionName, Condition);
        owner.register_module("downs", Downs);
        owner.register_module("ups", Ups);
        owner.register_module("mid_block1", MidBlock1);
        owner.register_module("mid_block2", MidBlock2);
        owner.register_module(middleName, Middle);
        owner.register_module("final_res_block", FinalBlock);
        owner.register_module("final_conv", FinalConv);
    }

    /// <summary>
    /// The walk: x → init_conv (kept as r); t = <paramref name="condition"/>(time_mlp(time)); down the levels, mid_block1,
    /// <paramref name="middle"/>, mid_block2, up the levels (with <paramref name="readText"/> after each level's attention,
    /// if given); final block on [x, r]; final_conv. Call it in the owner's dispose scope.
    /// </summary>
    public Tensor Forward(Tensor x, Tensor time, Func<Tensor, Tensor> condition, Func<Tensor, Tensor> middle,
        Func<TLevel, Tensor, Tensor>? readText = null)
    {
        x = InitConv.call(x);
        var r = x;
        var t = condition(TimeMlp.call(time));
        var skips = new Stack<Tensor>();
        x = UnetLayout.Down(Downs, x, t, skips, readText);
        x = MidBlock1.call(x, t);
        x = middle(x);
        x = MidBlock2.call(x, t);
        x = UnetLayout.Up(Ups, x, t, skips, readText);
        x = FinalBlock.call(cat([x, r], dim: 1), t);
        return FinalConv.call(x);
    }
}
