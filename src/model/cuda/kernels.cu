// EfficientNet-Lite's kernels besides the matrix products (cuBLAS), compiled at run time by
// NVRTC for the GPU at hand. Activations are NHWC; `T` is their storage type (float, or fp16
// held as its bits in an unsigned short, converted with PTX `cvt`: no CUDA headers needed).
// Sums are f32; a value is rounded once, when stored. `reference.rs` is the same arithmetic on
// the CPU: keep the two in step.

typedef unsigned short half_bits;
// 32-bit indices: the host keeps every tensor of a batch under 2^31 values, and unsigned
// arithmetic lets the grid-stride step go past that without overflow.
typedef unsigned int index_t;

__device__ __forceinline__ float load(const float* p, index_t i) { return p[i]; }
__device__ __forceinline__ float load(const half_bits* p, index_t i) {
    float f;
    asm("cvt.f32.f16 %0, %1;" : "=f"(f) : "h"(p[i]));
    return f;
}
__device__ __forceinline__ void store(float* p, index_t i, float v) { p[i] = v; }
__device__ __forceinline__ void store(half_bits* p, index_t i, float v) {
    half_bits h;
    asm("cvt.rn.f16.f32 %0, %1;" : "=h"(h) : "f"(v));
    p[i] = h;
}
__device__ __forceinline__ float relu6(float v) { return fminf(fmaxf(v, 0.0f), 6.0f); }
// GeM's floor before the power (descriptor/pooling.rs, GEM_EPS).
#define GEM_EPS 1e-6f

#define GRID_STRIDE(i, total) \
    for (index_t i = (index_t)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (index_t)blockDim.x * gridDim.x)

// One output value of a k x k convolution with stride and TF SAME padding (`pad` before; what
// falls past the far edge is zero): value `i` of NHWC [n, so, so, c] is its channel's bias
// plus `tap(b, ch, t, iy, ix)` (t = ky * k + kx) over the taps inside the s x s input.
template <typename Tap>
__device__ float convolve(index_t i, const float* bias, int c, int s, int so, int k, int stride,
                          int pad, Tap tap) {
    int ch = (int)(i % c);
    index_t pixel = i / c;
    int ox = (int)(pixel % so);
    int oy = (int)((pixel / so) % so);
    int b = (int)(pixel / (so * so));
    float acc = bias[ch];
    for (int ky = 0; ky < k; ++ky) {
        int iy = oy * stride + ky - pad;
        if (iy < 0 || iy >= s) continue;
        for (int kx = 0; kx < k; ++kx) {
            int ix = ox * stride + kx - pad;
            if (ix < 0 || ix >= s) continue;
            acc += tap(b, ch, ky * k + kx, iy, ix);
        }
    }
    return acc;
}

// The stem: a full convolution from the 8-bit input, packed RGB [n, s, s, ci], each value
// seen as (x - 127) / 128 (model/input.rs), to NHWC [n, so, so, co], bias and ReLU6 fused.
// Weights f32 [ci][k][k][co]. One thread per output value.
template <typename T>
__device__ void stem(const unsigned char* x, const float* w, const float* bias, T* y, int n,
                     int ci, int s, int co, int so, int k, int stride, int pad) {
    index_t total = (index_t)n * so * so * co;
    GRID_STRIDE(i, total) {
        float acc = convolve(i, bias, co, s, so, k, stride, pad,
                             [&](int b, int o, int t, int iy, int ix) {
                                 const unsigned char* px = x + (((index_t)b * s + iy) * s + ix) * ci;
                                 float sum = 0.0f;
                                 for (int c = 0; c < ci; ++c)
                                     sum += w[(c * k * k + t) * co + o] *
                                            (((float)px[c] - 127.0f) / 128.0f);
                                 return sum;
                             });
        store(y, i, relu6(acc));
    }
}

// A depthwise convolution, NHWC [n, s, s, c] to [n, so, so, c], bias and (when `act`) ReLU6
// fused. Weights tap-major f32 [k * k][c]: neighbouring threads (channels) read neighbouring
// weights and inputs.
template <typename T>
__device__ void depthwise(const T* x, const float* w, const float* bias, T* y, int n, int c,
                          int s, int so, int k, int stride, int pad, int act) {
    index_t total = (index_t)n * so * so * c;
    GRID_STRIDE(i, total) {
        float acc = convolve(i, bias, c, s, so, k, stride, pad,
                             [&](int b, int ch, int t, int iy, int ix) {
                                 return w[t * c + ch] * load(x, (((index_t)b * s + iy) * s + ix) * c + ch);
                             });
        store(y, i, act ? relu6(acc) : acc);
    }
}

// In place on a matrix product's output [rows, c]: add the bias, then ReLU6 (when `act`),
// then the residual `r` (when `has_residual`; `r` is any valid pointer otherwise).
template <typename T>
__device__ void bias_act(T* y, const float* bias, const T* r, index_t total, int c, int act,
                         int has_residual) {
    GRID_STRIDE(i, total) {
        float v = load(y, i) + bias[i % c];
        if (act) v = relu6(v);
        if (has_residual) v += load(r, i);
        store(y, i, v);
    }
}

// Global average pooling: NHWC [n, pixels, c] to f32 [n, c].
template <typename T>
__device__ void average_pool(const T* x, float* out, int n, int pixels, int c) {
    index_t total = (index_t)n * c;
    GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        index_t b = i / c;
        float sum = 0.0f;
        for (int q = 0; q < pixels; ++q) sum += load(x, (b * pixels + q) * c + ch);
        out[i] = sum / (float)pixels;
    }
}

// GeM pooling, (mean of max(x, eps)^p)^(1 / p) per channel: NHWC [n, pixels, c] to f32
// [n, c]. The CPU pools in f64 (descriptor/pooling.rs); f32 sums of at most a few hundred
// values of at most 6^p lose nothing a cosine sees.
template <typename T>
__device__ void gem_pool(const T* x, float* out, int n, int pixels, int c, float p) {
    index_t total = (index_t)n * c;
    GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        index_t b = i / c;
        float sum = 0.0f;
        for (int q = 0; q < pixels; ++q)
            sum += powf(fmaxf(load(x, (b * pixels + q) * c + ch), GEM_EPS), p);
        out[i] = powf(sum / (float)pixels, 1.0f / p);
    }
}

// GeM over square windows of the map (region descriptors): `windows` holds (y, x, side) per
// window; NHWC [n, side * side, c] to f32 [n, count, c], not normalised.
template <typename T>
__device__ void region_pool(const T* x, const int* windows, float* out, int n, int count,
                            int map_side, int c, float p) {
    index_t total = (index_t)n * count * c;
    GRID_STRIDE(i, total) {
        int ch = (int)(i % c);
        int w = (int)((i / c) % count);
        index_t b = i / ((index_t)c * count);
        int y0 = windows[3 * w], x0 = windows[3 * w + 1], side = windows[3 * w + 2];
        float sum = 0.0f;
        for (int y = y0; y < y0 + side; ++y)
            for (int xx = x0; xx < x0 + side; ++xx)
                sum += powf(fmaxf(load(x, ((b * map_side + y) * map_side + xx) * c + ch), GEM_EPS), p);
        out[i] = powf(sum / (float)(side * side), 1.0f / p);
    }
}

#define INSTANTIATE(T, suffix)                                                                 \
    extern "C" __global__ void stem_##suffix(const unsigned char* x, const float* w,           \
                                             const float* bias, T* y, int n, int ci, int s,     \
                                             int co, int so, int k, int stride, int pad) {      \
        stem<T>(x, w, bias, y, n, ci, s, co, so, k, stride, pad);                               \
    }                                                                                          \
    extern "C" __global__ void depthwise_##suffix(const T* x, const float* w, const float* bias, \
                                                  T* y, int n, int c, int s, int so, int k,    \
                                                  int stride, int pad, int act) {              \
        depthwise<T>(x, w, bias, y, n, c, s, so, k, stride, pad, act);                         \
    }                                                                                          \
    extern "C" __global__ void bias_act_##suffix(T* y, const float* bias, const T* r,          \
                                                 index_t total, int c, int act,                \
                                                 int has_residual) {                           \
        bias_act<T>(y, bias, r, total, c, act, has_residual);                                  \
    }                                                                                          \
    extern "C" __global__ void average_pool_##suffix(const T* x, float* out, int n, int pixels, \
                                                     int c) {                                  \
        average_pool<T>(x, out, n, pixels, c);                                                 \
    }                                                                                          \
    extern "C" __global__ void gem_pool_##suffix(const T* x, float* out, int n, int pixels,   \
                                                 int c, float p) {                             \
        gem_pool<T>(x, out, n, pixels, c, p);                                                  \
    }                                                                                          \
    extern "C" __global__ void region_pool_##suffix(const T* x, const int* windows, float* out, \
                                                    int n, int count, int map_side, int c,     \
                                                    float p) {                                 \
        region_pool<T>(x, windows, out, n, count, map_side, c, p);                             \
    }

INSTANTIATE(float, f32)
INSTANTIATE(half_bits, f16)
