// Resampling / shape parameters shared by host code, MSL and CUDA: fixed-width fields only.
// Images are NCHW. One struct serves every shape kernel; each reads the fields it needs:
//   upsampling: input (n, c, h, w), output (out_h, out_w) = (h * scale_h, w * scale_w);
//   pad / crop ("window"): output (n, out_c, out_h, out_w) position (k, i, j) reads input
//     (k - off_c, i - off_h, j - off_w) (crop: negative offsets); positions outside the
//     input read 0 (mode zero), the nearest edge (edge) or the mirror image without
//     repeating the edge (reflect: -1 -> 1, h -> h - 2);
//   concat ("paste"): input (n, c, h, w) lands at output channels off_c + [0, c) of out_c.
//   matrix transpose: input (h, w) = (rows, columns), output (out_h, out_w) = (w, h); n = c = 1.
#pragma once
#ifndef __METAL_VERSION__
#include <stdint.h>
#endif

enum MnnPadMode { MNN_PAD_ZERO = 0, MNN_PAD_EDGE = 1, MNN_PAD_REFLECT = 2, MNN_PAD_MODE_COUNT = 3 };

struct MnnShapeParams {
  int32_t n, c, h, w;             // input image
  int32_t out_c, out_h, out_w;    // output image (batch n)
  int32_t scale_h, scale_w;       // upsampling factors (>= 1)
  int32_t off_c, off_h, off_w;    // window / paste offsets (see above)
  uint32_t mode;                  // MnnPadMode; upsampling bilinear: 1 = align corners
  uint32_t pad0;
};
