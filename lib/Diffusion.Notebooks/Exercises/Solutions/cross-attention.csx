// Exercise cross-attention:   Attention(Q, K, V) = softmax(Q Kᵀ/√d + mask) V
//   q: [B, N, d] (one query per latent pixel), k: [B, M, d] and v: [B, M, d_v] (one key and value per token),
//   mask: [B, M] booleans, true for real tokens, false for padding (padding must get weight exactly 0).
//   Return the output [B, N, d_v].
Tensor MyCrossAttention(Tensor q, Tensor k, Tensor v, Tensor mask)
{
    var scores = q.matmul(k.transpose(-2, -1)) / Math.Sqrt(q.shape[^1]);                // Q Kᵀ/√d: [B, N, M]
    scores = scores.masked_fill(mask.logical_not().unsqueeze(1), float.NegativeInfinity); // + mask: −∞ on padding
    return scores.softmax(-1).matmul(v);                                                 // softmax over the tokens, then · V
}
