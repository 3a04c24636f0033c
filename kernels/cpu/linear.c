/* Linear layer: y (M, N) = act(x (M, K) . w (N, K)^T + b (N)). The outermost dim of x is the
 * batch: each item's rows go through their own sgemm calls (split into up to one chunk
 * per thread), so an item's result is bit for bit the same whatever else is in the batch
 * (GEMM kernels round differently by problem size). Each task applies the bias and
 * activation to its rows while they are still in cache.
 *
 * With bf16 compute (sd_backend_cpu_create_precision) each item runs as one oneDNN matmul
 * primitive made for one item's rows: the rows are rounded to bfloat16 by a reorder, the weight
 * is kept in the primitive's bfloat16 layout (prepared_weights.c), products accumulate in float32
 * with the bias, and the activation follows in float32 as above. */
#include "cpu_internal.h"

/* An item's rows are split over threads only into chunks of at least this many rows. */
#define SD_LINEAR_MIN_ROWS 32

/* One oneDNN call of the bf16 path; on failure records it and jumps to the cleanup. */
#define LINEAR_CHECK(call)                                                                         \
  do {                                                                                             \
    dnnl_status_t linear_status_ = (call);                                                         \
    if (linear_status_ != dnnl_success) {                                                          \
      sd_error_set(__FILE__, __LINE__, "oneDNN: %s: %s", #call, dnnl_status2str(linear_status_));  \
      goto out_release;                                                                            \
    }                                                                                              \
  } while (0)

/* y (items * rows, N) = act(x . w^T + b) with bfloat16 inputs, one matmul per item. */
static int linear_bf16(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                       sd_activation act, int64_t items, int64_t rows, sd_tensor *y) {
  sd_cpu_state *st = be->impl;
  int64_t n = w->shape[0], k = w->shape[1];
  dnnl_dims_t x_dims = {rows, k}, w_dims = {k, n}, b_dims = {1, n}, y_dims = {rows, n};
  dnnl_memory_desc_t x_plain, x_md, w_plain, w_any, b_md, y_md;
  dnnl_matmul_desc_t desc;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_primitive_t matmul = NULL, x_reorder = NULL;
  dnnl_memory_t x_user = NULL, x_mem = NULL, w_mem = NULL, b_mem = NULL, y_mem = NULL;
  sd_arena_mark mark = sd_arena_get_mark(be);
  int rc = -1;
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&x_plain, 2, x_dims, dnnl_f32, dnnl_ab));
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&x_md, 2, x_dims, dnnl_bf16, dnnl_ab));
  /* w (N, K) row-major is (K, N) with strides (1, K) */
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&w_plain, 2, w_dims, dnnl_f32, dnnl_ba));
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&w_any, 2, w_dims, dnnl_bf16, dnnl_format_tag_any));
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&b_md, 2, b_dims, dnnl_f32, dnnl_ab));
  LINEAR_CHECK(dnnl_memory_desc_init_by_tag(&y_md, 2, y_dims, dnnl_f32, dnnl_ab));
  LINEAR_CHECK(dnnl_matmul_desc_init(&desc, &x_md, &w_any, b ? &b_md : NULL, &y_md));
  LINEAR_CHECK(dnnl_primitive_desc_create(&pd, &desc, NULL, st->engine, NULL));
  LINEAR_CHECK(dnnl_primitive_create(&matmul, pd));
  const char *impl = NULL;
  LINEAR_CHECK(dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &impl));
  sd_cpu_note_kernel(be, "linear", impl);
  const dnnl_memory_desc_t *w_md = dnnl_primitive_desc_query_md(pd, dnnl_query_weights_md, 0);
  const void *weights = NULL;
  if (sd_cpu_prepared_weight(be, w, &w_plain, w_md, &weights) < 0) {
    sd_error_context("linear weight (%lld, %lld)", (long long)n, (long long)k);
    goto out_release;
  }
  float *x16 = sd_cpu_scratch(be, (size_t)(rows * k) / 2 + 1, "linear bf16 input");
  if (!x16)
    goto out_release;
  LINEAR_CHECK(dnnl_memory_create(&x_user, &x_plain, st->engine, x->data));
  LINEAR_CHECK(dnnl_memory_create(&x_mem, &x_md, st->engine, x16));
  LINEAR_CHECK(dnnl_memory_create(&w_mem, w_md, st->engine, (void *)weights));
  if (b)
    LINEAR_CHECK(dnnl_memory_create(&b_mem, &b_md, st->engine, b->data));
  LINEAR_CHECK(dnnl_memory_create(&y_mem, &y_md, st->engine, y->data));
  dnnl_primitive_desc_t reorder_pd = NULL;
  LINEAR_CHECK(dnnl_reorder_primitive_desc_create(&reorder_pd, &x_plain, st->engine, &x_md,
                                                  st->engine, NULL));
  dnnl_status_t made = dnnl_primitive_create(&x_reorder, reorder_pd);
  dnnl_primitive_desc_destroy(reorder_pd);
  LINEAR_CHECK(made);
  for (int64_t item = 0; item < items; item++) {
    float *out = (float *)y->data + item * rows * n; /* (rows, N) */
    LINEAR_CHECK(dnnl_memory_set_data_handle(x_user, (float *)x->data + item * rows * k));
    LINEAR_CHECK(dnnl_memory_set_data_handle(y_mem, out));
    dnnl_exec_arg_t from_to[2] = {{DNNL_ARG_FROM, x_user}, {DNNL_ARG_TO, x_mem}};
    LINEAR_CHECK(dnnl_primitive_execute(x_reorder, st->stream, 2, from_to));
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, x_mem},
                               {DNNL_ARG_WEIGHTS, w_mem},
                               {DNNL_ARG_DST, y_mem},
                               {DNNL_ARG_BIAS, b_mem}};
    LINEAR_CHECK(dnnl_primitive_execute(matmul, st->stream, b ? 4 : 3, args));
    if (act != SD_ACT_NONE) {
      int threads = (double)rows * (double)n < SD_CPU_PARALLEL_ELEMS ? 1 : sd_cpu_threads(be);
#pragma omp parallel for num_threads(threads)
      for (int64_t r = 0; r < rows; r++)
        sd_cpu_activate_array(out + r * n, NULL, act, n, out + r * n);
    }
  }
  LINEAR_CHECK(dnnl_stream_wait(st->stream));
  rc = 0;

out_release:
  dnnl_memory_destroy(x_user);
  dnnl_memory_destroy(x_mem);
  dnnl_memory_destroy(w_mem);
  dnnl_memory_destroy(b_mem);
  dnnl_memory_destroy(y_mem);
  dnnl_primitive_destroy(x_reorder);
  dnnl_primitive_destroy(matmul);
  dnnl_primitive_desc_destroy(pd);
  sd_arena_release(be, mark);
  return rc;
}

int sd_cpu_linear(sd_backend *be, const sd_tensor *x, const sd_tensor *w, const sd_tensor *b,
                  sd_activation act, sd_tensor *y) {
  int64_t n = w->shape[0], k = w->shape[1];
  int64_t m = sd_tensor_numel(x) / k;
  int64_t items = x->ndim >= 2 ? x->shape[0] : 1;
  int64_t item_rows = m / items;
  if (((sd_cpu_state *)be->impl)->compute == SD_DTYPE_BF16)
    return linear_bf16(be, x, w, b, act, items, item_rows, y);
  const float *in = x->data, *weight = w->data, *bias = b ? b->data : NULL;
  float *out = y->data;
  /* the split of an item depends on its own size and the backend only, never on the batch */
  int team = sd_cpu_threads(be);
  int64_t chunks = item_rows / SD_LINEAR_MIN_ROWS;
  chunks = chunks < 1 ? 1 : (chunks > team ? team : chunks);
  int64_t chunk_rows = (item_rows + chunks - 1) / chunks;
  double flops = 2.0 * (double)m * (double)n * (double)k;
  int threads = flops < SD_CPU_PARALLEL_FLOPS ? 1 : team;
  sd_dnnl_status failed = {dnnl_success};
#pragma omp parallel for schedule(dynamic, 1) num_threads(threads)
  for (int64_t task = 0; task < items * chunks; task++) {
    int64_t first = task / chunks * item_rows + task % chunks * chunk_rows;
    int64_t end = (task / chunks + 1) * item_rows;
    int64_t rows = end - first < chunk_rows ? end - first : chunk_rows;
    if (rows <= 0)
      continue;
    float *rows_out = out + first * n; /* (rows, N) */
    DNNL_NOTE(&failed, sd_cpu_sgemm('N', 'T', rows, n, k, 1.0f, in + first * k, k, weight, k, 0.0f,
                                    rows_out, n));
    if (bias || act != SD_ACT_NONE)
      for (int64_t r = 0; r < rows; r++)
        sd_cpu_activate_array(rows_out + r * n, bias, act, n, rows_out + r * n);
  }
  return sd_dnnl_report(&failed);
}
