// Fused elementwise loops of Eddy's training and scoring steps.
//
// Each replaces several numpy-style passes with one, on raw row-major float32 buffers. They are
// C so that the compiler vectorises them (float reductions, sqrt and exp need flags Swift does not
// expose), and each is built for AVX2+FMA with a portable fallback chosen at load time.
// Shapes in comments: rows x cols, row-major.
#ifndef EDDY_KERNELS_H
#define EDDY_KERNELS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/// y[r,c] = act(y[r,c] + b[c]); act is ReLU when relu != 0, else identity.
void eddy_bias_activate(float *y, const float *b, ptrdiff_t rows, ptrdiff_t cols, int relu);

/// d (rows x cols) holds dL/dh for a layer with output h; turns it into dL/d(pre-activation)
/// (ReLU: d * [h > 0]) and writes the bias gradient db[c] = sum_r d[r,c]. One pass.
void eddy_activation_backward_bias(float *d, const float *h, float *db, ptrdiff_t rows, ptrdiff_t cols,
                                   int relu);

/// Batch normalisation's forward pass over z (rows x cols) in place. With batch statistics
/// (running != NULL and rows > 1): mean[c] and inv[c] = 1/sqrt(var + eps) from the batch (biased
/// variance), and running mean and variance (running[0..cols), running[cols..2cols); unbiased) move
/// by momentum towards them; otherwise mean and inv come from `stats` (the same layout). Then
/// xhat = (z - mean) * inv and z = gamma * xhat. Returns whether batch statistics were used.
int eddy_batchnorm_forward(float *z, float *xhat, float *mean, float *inv, const float *gamma, const float *stats,
                           float *running, ptrdiff_t rows, ptrdiff_t cols, float eps, float momentum);

/// Batch normalisation's backward pass: d (rows x cols) holds dL/d(gamma*xhat + beta), dbeta its
/// column sums. Writes dgamma[c] = sum_r d*xhat, turns d into dL/dz in place (with batch statistics
/// gamma*inv/n * (n*d - dbeta - xhat*dgamma), else gamma*inv*d) and writes db[c] = sum_r dL/dz.
void eddy_batchnorm_backward(float *d, const float *xhat, const float *inv, const float *gamma, const float *dbeta,
                             float *dgamma, float *db, float *scratch, ptrdiff_t rows, ptrdiff_t cols, int batch);

/// Bias-corrected Adam over a flat buffer, PyTorch's formula:
/// g' = g + wd*p; m = b1 m + (1-b1) g'; v = b2 v + (1-b2) g'^2; p -= step_size * m / (sqrt(v)*inv_sqrt_bc2 + eps)
/// with step_size = lr / (1 - b1^t) and inv_sqrt_bc2 = 1 / sqrt(1 - b2^t).
void eddy_adam(float *p, const float *g, float *m, float *v, ptrdiff_t n, float b1, float b2, float step_size,
               float inv_sqrt_bc2, float eps, float weight_decay);

/// MSE forward and backward: dy = scale * (y - x); returns sum (y - x)^2.
float eddy_mse_backward(const float *y, const float *x, float *dy, ptrdiff_t n, float scale);

/// Per-row reconstruction error mean_c (y - x)^2 into errors[rows]; if feature_errors is not NULL it
/// receives (y - x)^2 (rows x cols).
void eddy_row_errors(const float *y, const float *x, ptrdiff_t rows, ptrdiff_t cols, float *errors,
                     float *feature_errors);

/// out[r,c] = (x[r,c] - mean[c]) * inv_scale[c]; out may alias x.
void eddy_standardise(const float *x, const float *mean, const float *inv_scale, ptrdiff_t rows, ptrdiff_t cols,
                      float *out);

/// In place over one row of logits: l[j] = exp(l[j] - shift), or 0 where ids != NULL and ids[j] == id
/// (a masked entry). Returns the sum of the new values.
float eddy_exp_shifted_masked(float *l, ptrdiff_t n, float shift, const int64_t *ids, int64_t id);

/// Largest of n values (n >= 1).
float eddy_max(const float *x, ptrdiff_t n);

/// out[r,:] = p[r,:] / max(||p[r,:]||, 1e-12); norms[r] receives that denominator (may be NULL).
void eddy_normalise_rows(const float *p, ptrdiff_t rows, ptrdiff_t cols, float *out, float *norms);

/// y[i] = exp(x[i]) with the kernels' polynomial exp (relative error < 2e-7 on [-87, 88]).
void eddy_exp(const float *x, float *y, ptrdiff_t n);

/// dst[r,:] = src[index[r],:] for r < rows: a minibatch gathered from a replay buffer.
void eddy_gather_rows(const float *src, const int64_t *index, ptrdiff_t rows, ptrdiff_t cols, float *dst);

/// Index of the first value that is NaN, infinite or beyond +-limit among n values, or -1 if none is.
ptrdiff_t eddy_first_outside(const float *x, ptrdiff_t n, float limit);

/// Running per-feature mean and variance over rows of x (rows x cols): weight 1/n for the n-th
/// sample until n reaches horizon, then 1/horizon. *count counts samples seen and is advanced. The
/// moments are doubles: a float mean at 1e6 does not move for any step under 0.06, so with a weight
/// of 1e-4 it froze for every difference under 600.
void eddy_running_moments(const float *x, ptrdiff_t rows, ptrdiff_t cols, double *mean, double *variance,
                          int64_t *count, int64_t horizon);

// The discord signal's step over lags lo..hi (DiscordSignal): with `slide`, each lag's dot product
// qt[lag] += newest * x[lag] - leaving * x[w + lag] first; then the smallest centred distance
// (times w), window_energy + energy[lag] - 2 (qt[lag] - wm * mean[lag]). x, energy and mean point
// at the newest value's slot of their rings, which run backwards in time (x[k] is k values before
// the newest) and are written twice, so every index used is in bounds.
double eddy_discord_step(double *qt, const double *x, const double *energy, const double *mean, ptrdiff_t w,
                         ptrdiff_t lo, ptrdiff_t hi, double newest, double leaving, double window_energy, double wm,
                         int slide);

// The sum of x[0..<w], and the sum of their squares in *squares (the discord's window moments).
double eddy_window_moments(const double *x, ptrdiff_t w, double *squares);

// The lag in lo...hi of the nearest earlier window by eddy_discord_step's distance (the first of
// equals).
ptrdiff_t eddy_discord_nearest_lag(const double *qt, const double *energy, const double *mean, ptrdiff_t lo,
                                   ptrdiff_t hi, double window_energy, double wm);

// The correlation signal (CorrelationSignal), on d × d row-major matrices. eddy_covariance_update:
// c = (1 - w)(c + w e eᵀ). eddy_cholesky: the lower triangular l with a = l lᵀ (its upper part set
// to 0), or -1 if a pivot is not positive. eddy_forward_norm: z = l⁻¹ e, and returns |z|² = eᵀ a⁻¹ e.
// eddy_back_shares: y = l⁻ᵀ z (= a⁻¹ e), and returns the i of the largest share e_i y_i of that sum
// (-1 when none is positive).
void eddy_covariance_update(double *c, const double *e, ptrdiff_t d, double w);
int eddy_cholesky(const double *a, double *l, ptrdiff_t d);
double eddy_forward_norm(const double *l, const double *e, double *z, ptrdiff_t d);
ptrdiff_t eddy_back_shares(const double *l, const double *z, const double *e, double *y, ptrdiff_t d);

/// A log line split at spaces, tabs and carriage returns: token i is line[starts[i] ..< ends[i]],
/// digits[i] whether it holds an ASCII digit. At most max_tokens (at least 1) tokens; the last holds
/// the rest of the line, blanks inside it included, without the blanks it ends with. Returns the
/// number of tokens. Sixteen bytes at a time where SSE2 is there (every x86-64).
ptrdiff_t eddy_tokenize(const uint8_t *line, ptrdiff_t n, ptrdiff_t *starts, ptrdiff_t *ends, _Bool *digits,
                        ptrdiff_t max_tokens);

#ifdef __cplusplus
}
#endif

#endif
