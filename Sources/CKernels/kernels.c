#include "eddy_kernels.h"

#include <math.h>
#include <stdbool.h>
#if defined(__SSE2__)
#include <emmintrin.h>
#endif

#if defined(__x86_64__) && defined(__linux__)
#define EDDY_KERNEL __attribute__((target_clones("arch=x86-64-v4", "arch=x86-64-v3", "default")))
#else
#define EDDY_KERNEL
#endif

// exp(x) in single precision, Cephes-style: x = n ln2 + r, a degree-6 polynomial for e^r, 2^n put
// into the exponent bits. Branch-free, so loops over it vectorise; a call to libm's expf does not.
// NaN gives NaN (the clamp alone made it e^-87.3, so a NaN logit weighed nothing and the loss stayed
// finite, hiding a poisoned key from the trainer's check).
static inline float poly_exp(float v) {
    float x = fminf(fmaxf(v, -87.3f), 88.3f);
    float n = floorf(x * 1.44269504088896341f + 0.5f);
    float r = x - n * 0.693359375f + n * 2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    float y = p * r * r + r + 1.0f;
    union { uint32_t u; float f; } scale = {.u = (uint32_t)((int32_t)n + 127) << 23};
    return v == v ? y * scale.f : v;
}

EDDY_KERNEL
void eddy_bias_activate(float *restrict y, const float *restrict b, ptrdiff_t rows, ptrdiff_t cols, int relu) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict row = y + r * cols;
        if (relu) {
            for (ptrdiff_t c = 0; c < cols; c++) row[c] = fmaxf(row[c] + b[c], 0.0f);
        } else {
            for (ptrdiff_t c = 0; c < cols; c++) row[c] += b[c];
        }
    }
}

EDDY_KERNEL
void eddy_activation_backward_bias(float *restrict d, const float *restrict h, float *restrict db, ptrdiff_t rows,
                                   ptrdiff_t cols, int relu) {
    for (ptrdiff_t c = 0; c < cols; c++) db[c] = 0.0f;
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict dr = d + r * cols;
        const float *restrict hr = h + r * cols;
        if (relu) {
            for (ptrdiff_t c = 0; c < cols; c++) {
                float g = hr[c] > 0.0f ? dr[c] : 0.0f;
                dr[c] = g;
                db[c] += g;
            }
        } else {
            for (ptrdiff_t c = 0; c < cols; c++) db[c] += dr[c];
        }
    }
}

EDDY_KERNEL
void eddy_adam(float *restrict p, const float *restrict g, float *restrict m, float *restrict v, ptrdiff_t n,
               float b1, float b2, float step_size, float inv_sqrt_bc2, float eps, float weight_decay) {
    for (ptrdiff_t i = 0; i < n; i++) {
        float gi = g[i] + weight_decay * p[i];
        float mi = b1 * m[i] + (1.0f - b1) * gi;
        float vi = b2 * v[i] + (1.0f - b2) * gi * gi;
        m[i] = mi;
        v[i] = vi;
        p[i] -= step_size * mi / (sqrtf(vi) * inv_sqrt_bc2 + eps);
    }
}

EDDY_KERNEL
float eddy_mse_backward(const float *restrict y, const float *restrict x, float *restrict dy, ptrdiff_t n,
                        float scale) {
    float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
    for (ptrdiff_t i = 0; i < n; i++) {
        float e = y[i] - x[i];
        sum += e * e;
        dy[i] = scale * e;
    }
    return sum;
}

EDDY_KERNEL
void eddy_row_errors(const float *restrict y, const float *restrict x, ptrdiff_t rows, ptrdiff_t cols,
                     float *restrict errors, float *restrict feature_errors) {
    float inv = 1.0f / (float)cols;
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *restrict yr = y + r * cols;
        const float *restrict xr = x + r * cols;
        float sum = 0.0f;
        if (feature_errors) {
            float *restrict fe = feature_errors + r * cols;
#pragma omp simd reduction(+ : sum)
            for (ptrdiff_t c = 0; c < cols; c++) {
                float e = yr[c] - xr[c];
                fe[c] = e * e;
                sum += e * e;
            }
        } else {
#pragma omp simd reduction(+ : sum)
            for (ptrdiff_t c = 0; c < cols; c++) {
                float e = yr[c] - xr[c];
                sum += e * e;
            }
        }
        errors[r] = sum * inv;
    }
}

EDDY_KERNEL
void eddy_standardise(const float *x, const float *restrict mean, const float *restrict inv_scale, ptrdiff_t rows,
                      ptrdiff_t cols, float *out) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *xr = x + r * cols;
        float *yr = out + r * cols;
        for (ptrdiff_t c = 0; c < cols; c++) yr[c] = (xr[c] - mean[c]) * inv_scale[c];
    }
}

EDDY_KERNEL
float eddy_exp_shifted_masked(float *restrict l, ptrdiff_t n, float shift, const int64_t *restrict ids, int64_t id) {
    float sum = 0.0f;
    if (ids) {
#pragma omp simd reduction(+ : sum)
        for (ptrdiff_t j = 0; j < n; j++) {
            float e = ids[j] == id ? 0.0f : poly_exp(l[j] - shift);
            l[j] = e;
            sum += e;
        }
    } else {
#pragma omp simd reduction(+ : sum)
        for (ptrdiff_t j = 0; j < n; j++) {
            float e = poly_exp(l[j] - shift);
            l[j] = e;
            sum += e;
        }
    }
    return sum;
}

EDDY_KERNEL
float eddy_max(const float *restrict x, ptrdiff_t n) {
    float top = x[0];
#pragma omp simd reduction(max : top)
    for (ptrdiff_t i = 1; i < n; i++) top = fmaxf(top, x[i]);
    return top;
}

EDDY_KERNEL
void eddy_normalise_rows(const float *restrict p, ptrdiff_t rows, ptrdiff_t cols, float *restrict out,
                         float *restrict norms) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *restrict pr = p + r * cols;
        float sum = 0.0f;
#pragma omp simd reduction(+ : sum)
        for (ptrdiff_t c = 0; c < cols; c++) sum += pr[c] * pr[c];
        float norm = fmaxf(sqrtf(sum), 1e-12f);
        if (norms) norms[r] = norm;
        float s = 1.0f / norm;
        for (ptrdiff_t c = 0; c < cols; c++) out[r * cols + c] = pr[c] * s;
    }
}

EDDY_KERNEL
void eddy_exp(const float *restrict x, float *restrict y, ptrdiff_t n) {
    for (ptrdiff_t i = 0; i < n; i++) y[i] = poly_exp(x[i]);
}

void eddy_gather_rows(const float *restrict src, const int64_t *restrict index, ptrdiff_t rows, ptrdiff_t cols,
                      float *restrict dst) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *restrict from = src + index[r] * cols;
        float *restrict to = dst + r * cols;
        for (ptrdiff_t c = 0; c < cols; c++) to[c] = from[c];
    }
}


EDDY_KERNEL
ptrdiff_t eddy_first_outside(const float *restrict x, ptrdiff_t n, float limit) {
    // Blocks of 64 with a branch-free check, so the common all-inside case vectorises. !(|x| <= limit)
    // holds for NaN too.
    for (ptrdiff_t start = 0; start < n; start += 64) {
        ptrdiff_t end = start + 64 < n ? start + 64 : n;
        int bad = 0;
        for (ptrdiff_t i = start; i < end; i++) bad |= !(fabsf(x[i]) <= limit);
        if (bad)
            for (ptrdiff_t i = start; i < end; i++)
                if (!(fabsf(x[i]) <= limit)) return i;
    }
    return -1;
}

EDDY_KERNEL
void eddy_running_moments(const float *restrict x, ptrdiff_t rows, ptrdiff_t cols, double *restrict mean,
                          double *restrict variance, int64_t *restrict count, int64_t horizon) {
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *restrict row = x + r * cols;
        *count += 1;
        if (*count == 1) {
            for (ptrdiff_t c = 0; c < cols; c++) {
                mean[c] = row[c];
                variance[c] = 0.0;
            }
            continue;
        }
        double w = 1.0 / (double)(*count < horizon ? *count : horizon);
        for (ptrdiff_t c = 0; c < cols; c++) {
            double delta = (double)row[c] - mean[c];
            mean[c] += w * delta;
            variance[c] = (1.0 - w) * (variance[c] + w * delta * delta);
        }
    }
}

// Eight doubles, loaded and stored unaligned (the rings are indexed from any slot). Macros, not
// functions: a function passing this type by value would have a different ABI in each target clone.
typedef double eddy_f64x8 __attribute__((vector_size(64)));
#define LOAD8(p) ({ eddy_f64x8 v_; __builtin_memcpy(&v_, (p), sizeof v_); v_; })
#define STORE8(p, v) do { const eddy_f64x8 w_ = (v); __builtin_memcpy((p), &w_, sizeof w_); } while (0)

EDDY_KERNEL
double eddy_discord_step(double *restrict qt, const double *restrict x, const double *restrict energy,
                         const double *restrict mean, ptrdiff_t w, ptrdiff_t lo, ptrdiff_t hi, double newest,
                         double leaving, double window_energy, double wm, int slide) {
    double best = INFINITY;
    ptrdiff_t lag = lo;
    if (slide) {
        // Slide and minimum in one pass over qt, written with explicit vectors: the vectoriser does
        // not fuse the two loops itself. Two accumulators hide the min's latency. Each lag takes the
        // same operations as in the scalar tail (the compiler may fuse a multiply and an add in
        // either, as everywhere in these kernels).
        const eddy_f64x8 nv = newest - (eddy_f64x8){}, lv = leaving - (eddy_f64x8){};
        const eddy_f64x8 ev = window_energy - (eddy_f64x8){}, mv = wm - (eddy_f64x8){};
        eddy_f64x8 b0 = INFINITY - (eddy_f64x8){}, b1 = b0;
        for (; lag + 15 <= hi; lag += 16) {
            const eddy_f64x8 q0 = LOAD8(qt + lag) + (nv * LOAD8(x + lag) - lv * LOAD8(x + w + lag));
            const eddy_f64x8 q1 = LOAD8(qt + lag + 8) + (nv * LOAD8(x + lag + 8) - lv * LOAD8(x + w + lag + 8));
            STORE8(qt + lag, q0);
            STORE8(qt + lag + 8, q1);
            b0 = __builtin_elementwise_min(b0, ev + LOAD8(energy + lag) - 2.0 * (q0 - mv * LOAD8(mean + lag)));
            b1 = __builtin_elementwise_min(b1, ev + LOAD8(energy + lag + 8) - 2.0 * (q1 - mv * LOAD8(mean + lag + 8)));
        }
        b0 = __builtin_elementwise_min(b0, b1);
        for (int i = 0; i < 8; i++) best = __builtin_fmin(best, b0[i]);
        for (; lag <= hi; lag++) {
            const double q = qt[lag] + (newest * x[lag] - leaving * x[w + lag]);
            qt[lag] = q;
            best = __builtin_fmin(best, window_energy + energy[lag] - 2.0 * (q - wm * mean[lag]));
        }
        return best;
    }
    // fmin, not a comparison: the vectoriser knows that as a reduction.
    for (; lag <= hi; lag++)
        best = __builtin_fmin(best, window_energy + energy[lag] - 2.0 * (qt[lag] - wm * mean[lag]));
    return best;
}

EDDY_KERNEL
double eddy_window_moments(const double *restrict x, ptrdiff_t w, double *restrict squares) {
    double sum = 0.0, sq = 0.0;
#pragma omp simd reduction(+ : sum, sq)
    for (ptrdiff_t k = 0; k < w; k++) {
        sum += x[k];
        sq += x[k] * x[k];
    }
    *squares = sq;
    return sum;
}

EDDY_KERNEL
ptrdiff_t eddy_discord_nearest_lag(const double *restrict qt, const double *restrict energy,
                                   const double *restrict mean, ptrdiff_t lo, ptrdiff_t hi, double window_energy,
                                   double wm) {
    ptrdiff_t at = lo;
    double best = INFINITY;
    for (ptrdiff_t lag = lo; lag <= hi; lag++) {
        const double d = window_energy + energy[lag] - 2.0 * (qt[lag] - wm * mean[lag]);
        if (d < best) { best = d; at = lag; }
    }
    return at;
}

EDDY_KERNEL
void eddy_covariance_update(double *restrict c, const double *restrict e, ptrdiff_t d, double w) {
    const double keep = 1 - w;
    for (ptrdiff_t i = 0; i < d; i++) {
        const double ei = w * e[i];
        double *restrict row = c + i * d;
        for (ptrdiff_t j = 0; j < d; j++) row[j] = keep * (row[j] + ei * e[j]);
    }
}

EDDY_KERNEL
int eddy_cholesky(const double *restrict a, double *restrict l, ptrdiff_t d) {
    for (ptrdiff_t j = 0; j < d; j++) {
        const double *restrict lj = l + j * d;
        double pivot = a[j * d + j];
#pragma omp simd reduction(- : pivot)
        for (ptrdiff_t k = 0; k < j; k++) pivot -= lj[k] * lj[k];
        if (!(pivot > 0) || !isfinite(pivot)) return -1;
        const double ljj = sqrt(pivot);
        l[j * d + j] = ljj;
        for (ptrdiff_t k = j + 1; k < d; k++) l[j * d + k] = 0;
        for (ptrdiff_t i = j + 1; i < d; i++) {
            const double *restrict li = l + i * d;
            double v = a[i * d + j];
#pragma omp simd reduction(- : v)
            for (ptrdiff_t k = 0; k < j; k++) v -= li[k] * lj[k];
            l[i * d + j] = v / ljj;
        }
    }
    return 0;
}

EDDY_KERNEL
double eddy_forward_norm(const double *restrict l, const double *restrict e, double *restrict z, ptrdiff_t d) {
    double total = 0;
    for (ptrdiff_t i = 0; i < d; i++) {
        const double *restrict li = l + i * d;
        double v = e[i];
#pragma omp simd reduction(- : v)
        for (ptrdiff_t k = 0; k < i; k++) v -= li[k] * z[k];
        z[i] = v / li[i];
        total += z[i] * z[i];
    }
    return total;
}

ptrdiff_t eddy_back_shares(const double *restrict l, const double *restrict z, const double *restrict e,
                           double *restrict y, ptrdiff_t d) {
    // y = l⁻ᵀ z, so that y = a⁻¹ e; then the largest e_i y_i.
    for (ptrdiff_t i = d - 1; i >= 0; i--) {
        double v = z[i];
        for (ptrdiff_t k = i + 1; k < d; k++) v -= l[k * d + i] * y[k];
        y[i] = v / l[i * d + i];
    }
    double best = 0;
    ptrdiff_t at = -1;
    for (ptrdiff_t i = 0; i < d; i++) {
        if (e[i] * y[i] > best) { best = e[i] * y[i]; at = i; }
    }
    return at;
}

static inline bool is_blank(uint8_t c) { return c == ' ' || c == '\t' || c == '\r'; }

ptrdiff_t eddy_tokenize(const uint8_t *line, ptrdiff_t n, ptrdiff_t *starts, ptrdiff_t *ends, _Bool *digits,
                        ptrdiff_t max_tokens) {
    ptrdiff_t count = 0, start = -1, i = 0;
    bool digit = false;
#if defined(__SSE2__)
    // Each 16-byte block as two bit masks (blanks, digits); tokens are the runs between blanks.
    const __m128i space = _mm_set1_epi8(' '), tab = _mm_set1_epi8('\t'), cr = _mm_set1_epi8('\r');
    const __m128i zero = _mm_set1_epi8('0'), nine = _mm_set1_epi8(9);
    while (i + 16 <= n && count < max_tokens - 1) {
        __m128i v = _mm_loadu_si128((const __m128i *)(line + i));
        unsigned blanks = (unsigned)_mm_movemask_epi8(
            _mm_or_si128(_mm_or_si128(_mm_cmpeq_epi8(v, space), _mm_cmpeq_epi8(v, tab)), _mm_cmpeq_epi8(v, cr)));
        __m128i d = _mm_sub_epi8(v, zero);
        unsigned digitBits = (unsigned)_mm_movemask_epi8(_mm_cmpeq_epi8(_mm_min_epu8(d, nine), d));
        unsigned others = ~blanks & 0xFFFFu;
        unsigned at = 0;
        while (at < 16) {
            if (start < 0) {
                unsigned rest = others >> at;
                if (!rest) break;
                at += (unsigned)__builtin_ctz(rest);
                start = i + at;
            }
            unsigned rest = blanks >> at;
            if (!rest) {  // the token goes on past the block
                digit = digit || (digitBits >> at) != 0;
                break;
            }
            unsigned end = at + (unsigned)__builtin_ctz(rest);
            digit = digit || ((digitBits >> at) & ((1u << (end - at)) - 1u)) != 0;
            starts[count] = start;
            ends[count] = i + end;
            digits[count] = digit;
            count += 1;
            start = -1;
            digit = false;
            at = end + 1;
            if (count == max_tokens - 1) break;
        }
        i += at < 16 && count == max_tokens - 1 ? at : 16;
    }
#endif
    for (; i < n; i++) {
        uint8_t c = line[i];
        if (is_blank(c)) {
            if (start >= 0 && count < max_tokens - 1) {
                starts[count] = start;
                ends[count] = i;
                digits[count] = digit;
                count += 1;
                start = -1;
                digit = false;
            }
        } else {
            if (start < 0) start = i;
            digit = digit || (uint8_t)(c - '0') < 10;
        }
    }
    if (start >= 0) {
        ptrdiff_t end = n;
        while (end > start && is_blank(line[end - 1])) end -= 1;
        starts[count] = start;
        ends[count] = end;
        digits[count] = digit;
        count += 1;
    }
    return count;
}

EDDY_KERNEL
int eddy_batchnorm_forward(float *restrict z, float *restrict xhat, float *restrict mean, float *restrict inv,
                           const float *restrict gamma, const float *stats, float *running,
                           ptrdiff_t rows, ptrdiff_t cols, float eps, float momentum) {
    const int batch = running != NULL && rows > 1;
    if (batch) {
        for (ptrdiff_t c = 0; c < cols; c++) { mean[c] = 0; inv[c] = 0; }
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *restrict zr = z + r * cols;
            for (ptrdiff_t c = 0; c < cols; c++) mean[c] += zr[c];
        }
        const float n = (float)rows;
        for (ptrdiff_t c = 0; c < cols; c++) mean[c] /= n;
        for (ptrdiff_t r = 0; r < rows; r++) {
            const float *restrict zr = z + r * cols;
            for (ptrdiff_t c = 0; c < cols; c++) {
                const float d = zr[c] - mean[c];
                inv[c] += d * d;
            }
        }
        for (ptrdiff_t c = 0; c < cols; c++) {
            const float variance = inv[c] / n;
            running[c] = (1 - momentum) * running[c] + momentum * mean[c];
            running[cols + c] = (1 - momentum) * running[cols + c] + momentum * variance * n / (n - 1);
            inv[c] = 1 / sqrtf(variance + eps);
        }
    } else {
        for (ptrdiff_t c = 0; c < cols; c++) {
            mean[c] = stats[c];
            inv[c] = 1 / sqrtf(stats[cols + c] + eps);
        }
    }
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict zr = z + r * cols;
        float *restrict xr = xhat + r * cols;
        for (ptrdiff_t c = 0; c < cols; c++) {
            const float v = (zr[c] - mean[c]) * inv[c];
            xr[c] = v;
            zr[c] = gamma[c] * v;
        }
    }
    return batch;
}

EDDY_KERNEL
void eddy_batchnorm_backward(float *restrict d, const float *restrict xhat, const float *restrict inv,
                             const float *restrict gamma, const float *restrict dbeta, float *restrict dgamma,
                             float *restrict db, float *restrict scratch, ptrdiff_t rows, ptrdiff_t cols, int batch) {
    for (ptrdiff_t c = 0; c < cols; c++) { dgamma[c] = 0; db[c] = 0; }
    for (ptrdiff_t r = 0; r < rows; r++) {
        const float *restrict dr = d + r * cols, *restrict xr = xhat + r * cols;
        for (ptrdiff_t c = 0; c < cols; c++) dgamma[c] += dr[c] * xr[c];
    }
    const float n = (float)rows;
    for (ptrdiff_t c = 0; c < cols; c++) scratch[c] = batch ? gamma[c] * inv[c] / n : gamma[c] * inv[c];
    for (ptrdiff_t r = 0; r < rows; r++) {
        float *restrict dr = d + r * cols;
        const float *restrict xr = xhat + r * cols;
        if (batch) {
            for (ptrdiff_t c = 0; c < cols; c++) dr[c] = scratch[c] * (n * dr[c] - dbeta[c] - xr[c] * dgamma[c]);
        } else {
            for (ptrdiff_t c = 0; c < cols; c++) dr[c] *= scratch[c];
        }
        for (ptrdiff_t c = 0; c < cols; c++) db[c] += dr[c];
    }
}
