// Exercise flow-euler-step:   x_{t'} = x_t + (t' − t)·f̂   (Euler's method on dx/dt = f(x, t), from t down to t' < t)
//   x, velocity: [B, C, H, W];  t, tNext: the two times in [0, 1], tNext < t.  Return x at tNext, the shape of x.
Tensor MyFlowEulerStep(Tensor x, Tensor velocity, double t, double tNext)
{
    return x + (tNext - t) * velocity;                                   // tNext − t < 0: towards the data
}
