#include "metalnn/backend/metal/optimizer.h"

#include <algorithm>
#include <cstring>
#include <memory>
#include <string>

#include "metalnn/backend/metal/elementwise.h"
#include "metalnn/backend/metal/kernel.h"

namespace metalnn::metal {

namespace {

// Range-table entries cover at most this many elements, so a big tensor is split and the
// threadgroups of one dispatch get similar work.
constexpr uint32_t kRangeChunk = 1u << 16;

// Buffer layout shared by all kernels: w 0, g 1, state 2 .. 1 + nstate, params 2 + nstate,
// then count (single) or ranges and nranges (many).
struct Layout {
  DType dtype;               // the first slot's weights
  std::string single, many;  // kernel names for that dtype
  int nstate;                // state buffers bound
  bool used[3];              // which of them the options read
};

DType weights_dtype(const std::vector<OptimizerSlot>& slots) {
  return slots.empty() ? DType::float32 : slots[0].weights->dtype();
}

// A tensor spanning the whole block behind `t` (the multi-tensor kernels index one arena).
Tensor whole_block(const Tensor& t) {
  const size_t size = dtype_size(t.dtype());
  return Tensor(t.buffer(), {(int64_t)(t.buffer()->bytes() / size)}, t.dtype(), 0);
}

// Element offset of `t` within its block, or -1 if not a whole number of elements.
int64_t element_offset(const Tensor& t) {
  const size_t bytes = static_cast<const char*>(t.raw()) - static_cast<const char*>(t.buffer()->data());
  const size_t size = dtype_size(t.dtype());
  return bytes % size == 0 ? (int64_t)(bytes / size) : -1;
}

// The shared block of member `get` over all slots, or nullptr if they do not share one.
template <class Get>
const Tensor* arena_of(const std::vector<OptimizerSlot>& slots, Get get) {
  const Tensor* first = get(slots[0]);
  if (!first || !first->defined()) return nullptr;
  for (const OptimizerSlot& s : slots) {
    const Tensor* t = get(s);
    if (!t || !t->defined() || t->buffer() != first->buffer() || t->dtype() != first->dtype()) return nullptr;
    if (element_offset(*t) < 0 || element_offset(*t) + t->numel() > (int64_t)UINT32_MAX) return nullptr;
  }
  return first;
}

template <class P>
void step_one(const char* op, const Layout& l, const OptimizerSlot& s, const P& p) {
  const Tensor& w = *s.weights;
  const uint32_t count = element_count(op, w);
  // A slot whose dtype differs from the first slot's takes the same kernel in its own dtype.
  std::string name = l.single;
  if (w.dtype() != l.dtype) name = name.substr(0, name.rfind('_') + 1) + dtype_name(w.dtype());
  KernelCall k(op, name);
  k.buffer(0, w, Access::read_write).buffer(1, *s.gradients, Access::read);
  for (int i = 0; i < l.nstate; ++i) {
    const bool bound = l.used[i] && s.state[i] && s.state[i]->defined();
    // A missing state the options need would make the kernel write into the gradients.
    if (l.used[i] && !bound) fail(ErrorKind::Runtime, op, "optimizer state ", i, " is missing");
    if (bound) k.buffer(2 + i, *s.state[i], Access::read_write);
    else k.buffer(2 + i, *s.gradients, Access::read);  // unused state: not read by the kernel
  }
  k.bytes(2 + l.nstate, p).bytes(3 + l.nstate, count).threads(count);
}

// One *_step_many dispatch over arenas; false if the slots do not allow it.
template <class P>
bool step_many(const char* op, const Layout& l, const std::vector<OptimizerSlot>& slots, const P& p) {
  const Tensor* w = arena_of(slots, [](const OptimizerSlot& s) { return s.weights; });
  const Tensor* g = arena_of(slots, [](const OptimizerSlot& s) { return s.gradients; });
  if (!w || !g || w->dtype() != g->dtype()) return false;
  const Tensor* state[3] = {nullptr, nullptr, nullptr};
  for (int i = 0; i < l.nstate; ++i) {
    if (!l.used[i]) continue;
    state[i] = arena_of(slots, [i](const OptimizerSlot& s) { return s.state[i]; });
    if (!state[i]) return false;
  }
  // Written arenas must be distinct blocks: a staged block is copied back whole on completion,
  // so two written bindings of one block would overwrite each other's updates.
  for (int i = 0; i < l.nstate; ++i) {
    if (!state[i]) continue;
    if (state[i]->buffer() == w->buffer()) return false;
    for (int j = 0; j < i; ++j)
      if (state[j] && state[j]->buffer() == state[i]->buffer()) return false;
  }

  std::vector<uint32_t> table;  // uint4 per entry: weight, gradient, state offset, count
  uint32_t widest = 1;
  for (const OptimizerSlot& s : slots) {
    const uint32_t n = element_count(op, *s.weights);
    const uint32_t wo = (uint32_t)element_offset(*s.weights), go = (uint32_t)element_offset(*s.gradients);
    uint32_t so = 0;
    for (int i = 0; i < l.nstate; ++i)
      if (state[i]) {
        so = (uint32_t)element_offset(*s.state[i]);
        break;
      }
    // Every used state must sit at the same offset in its arena: the kernel takes one.
    for (int i = 0; i < l.nstate; ++i)
      if (state[i] && (uint32_t)element_offset(*s.state[i]) != so) return false;
    for (uint32_t done = 0; done < n; done += kRangeChunk) {
      const uint32_t c = std::min(kRangeChunk, n - done);
      table.insert(table.end(), {wo + done, go + done, so + done, c});
      widest = std::max(widest, c);
    }
  }
  const uint32_t nranges = (uint32_t)(table.size() / 4);
  if (nranges == 0) return true;

  KernelCall k(op, l.many);
  k.buffer(0, whole_block(*w), Access::read_write).buffer(1, whole_block(*g), Access::read);
  for (int i = 0; i < l.nstate; ++i) {
    if (state[i]) k.buffer(2 + i, whole_block(*state[i]), Access::read_write);
    else k.buffer(2 + i, whole_block(*g), Access::read);  // unused state: not read by the kernel
  }
  k.bytes(2 + l.nstate, p);
  const size_t table_bytes = table.size() * sizeof(uint32_t);
  if (table_bytes <= 4096) {
    k.bytes(3 + l.nstate, table.data(), table_bytes);
  } else {
    // Larger tables travel in a buffer (setBytes stops at 4 KiB).
    Tensor ranges = Tensor::empty({(int64_t)table.size()}, DType::int32);
    std::memcpy(ranges.raw(), table.data(), table_bytes);
    k.buffer(3 + l.nstate, ranges, Access::read);
  }
  k.bytes(4 + l.nstate, nranges);
  k.groups(nranges, 1, 1, threadgroup_width(k.pipeline(), widest));
  return true;
}

template <class P>
void step(const char* op, const Layout& l, const std::vector<OptimizerSlot>& slots, const P& p) {
  if (slots.empty()) return;
  if (slots.size() > 1 && step_many(op, l, slots, p)) return;
  for (const OptimizerSlot& s : slots) step_one(op, l, s, p);
}

}  // namespace

// Buffers: w 0, g 1, v 2, params 3, count 4 (many: ranges 4, nranges 5).
void sgd_step(const std::vector<OptimizerSlot>& slots, const MnnSgdParams& p) {
  const DType t = weights_dtype(slots);
  Layout l{t, kernel_name("sgd_step", t), kernel_name("sgd_step_many", t), 1,
           {p.has_momentum_buffer != 0, false, false}};
  step("sgd_step", l, slots, p);
}

// Buffers: w 0, g 1, m 2, v 3, v_max 4, params 5, count 6 (many: ranges 6, nranges 7).
void adam_step(const std::vector<OptimizerSlot>& slots, const MnnAdamParams& p) {
  const DType t = weights_dtype(slots);
  Layout l{t, kernel_name("adam_step", t), kernel_name("adam_step_many", t), 3, {true, true, p.amsgrad != 0}};
  step("adam_step", l, slots, p);
}

// Buffers: w 0, g 1, s 2, params 3, count 4 (many: ranges 4, nranges 5).
void rmsprop_step(const std::vector<OptimizerSlot>& slots, const MnnRmsPropParams& p) {
  const DType t = weights_dtype(slots);
  Layout l{t, kernel_name("rmsprop_step", t), kernel_name("rmsprop_step_many", t), 1, {true, false, false}};
  step("rmsprop_step", l, slots, p);
}

}  // namespace metalnn::metal
