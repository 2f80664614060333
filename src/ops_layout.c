/* Layouts and the operators' workspace sizes, shared by every element
 * type. */
#include "ops_cut.h"

void bn_layout_init(bn_layout *layout, const int64_t *shape, int rank,
                    const bool *normalized, size_t groups) {
  /* Expand to (size, stat_stride) pairs, splitting the batch for ghosts. */
  int64_t size[BNORM_MAX_RANK + 2], stride[BNORM_MAX_RANK + 2];
  int n = 0;
  size_t channels = 1;
  for (int i = rank - 1; i >= 0; i--)
    if (normalized[i])
      channels *= (size_t)shape[i];
  size_t channel_stride = channels;
  for (int i = 0; i < rank; i++) {
    if (i == 0 && groups > 0) {
      size[n] = shape[0] / (int64_t)groups;
      stride[n++] = 0;
      size[n] = (int64_t)groups;
      stride[n++] = (int64_t)channels;
      continue;
    }
    size[n] = shape[i];
    if (normalized[i]) {
      channel_stride /= (size_t)shape[i] ? (size_t)shape[i] : 1;
      stride[n++] = (int64_t)channel_stride;
    } else {
      stride[n++] = 0;
    }
  }
  size_t total = 1;
  for (int i = 0; i < n; i++)
    total *= (size_t)size[i];

  /* Merge: drop size-1 dims; join neighbours whose strides compose. */
  layout->dims = 0;
  for (int i = 0; i < n; i++) {
    if (size[i] == 1 && total != 0)
      continue;
    int d = layout->dims;
    if (d > 0) {
      int64_t inner_size = size[i], inner_stride = stride[i];
      int64_t *outer_size = &layout->size[d - 1];
      int64_t outer_stride = layout->stat_stride[d - 1];
      bool both_reduce = outer_stride == 0 && inner_stride == 0;
      bool keep_contiguous = outer_stride != 0 && inner_stride != 0 &&
                             outer_stride == inner_size * inner_stride;
      if (both_reduce || keep_contiguous) {
        *outer_size *= inner_size;
        layout->stat_stride[d - 1] = inner_stride;
        continue;
      }
    }
    layout->size[d] = size[i];
    layout->stat_stride[d] = stride[i];
    layout->dims = d + 1;
  }
  if (layout->dims == 0) { /* a single element */
    layout->dims = 1;
    layout->size[0] = 1;
    layout->stat_stride[0] = 0;
  }
  layout->stats = (groups > 0 ? groups : 1) * channels;
  layout->total = total;
  layout->reduce_count = layout->stats ? total / layout->stats : 0;
}

size_t bn_op_moments_workspace(const bn_layout *layout) {
  bn_cut cut;
  bn_cut_init(&cut, layout, BN_MOMENTS);
  return (cut.chunks ? cut.chunks : 1) * bn_chunk_moments_doubles(layout, &cut);
}

size_t bn_op_grad_sums_workspace(const bn_layout *layout) {
  bn_cut cut;
  bn_cut_init(&cut, layout, BN_GRAD_SUMS);
  return (cut.chunks ? cut.chunks : 1) * 2 * layout->stats;
}

/* The sums' workspace, then a set of coefficients (a, b, c) and of sums
 * for each of the two threads that may share a tensor of one chunk (see
 * bn_op_grad), in doubles for either element type. */
size_t bn_op_grad_workspace(const bn_layout *layout) {
  return bn_op_grad_sums_workspace(layout) + 2 * 5 * layout->stats;
}
