#include "rnn.h"

#include <cstring>
#include <vector>

#include "sequence.h"

namespace npq {

void rnn_sequence_dynamic(const PackedLinear& hh, const PackedLinear* hr,
                          const RnnSequenceArgs& a) {
  const size_t gates = (a.lstm ? 4 : 3) * a.hidden, hid = a.hidden, os = a.out_size;
  std::vector<float> gh(a.batch * gates), h_new(hr ? a.batch * hid : 0);
  for (size_t s = 0; s < a.steps; ++s) {
    const size_t t = a.reverse ? a.steps - 1 - s : s;
    const size_t bs = a.batch_sizes ? static_cast<size_t>(a.batch_sizes[t]) : a.batch;
    const float* gi = a.gi + t * a.batch * gates;
    hh.run_dynamic(bs, a.h, false, false, gh.data());
    float* hn = hr ? h_new.data() : a.h;  // without proj_size the new h replaces h in place
    if (a.lstm)
      lstm_cell_f32(bs, hid, gi, gh.data(), a.c, a.c, hn);
    else
      gru_cell_f32(bs, hid, gi, gh.data(), a.h, a.h);
    if (hr) hr->run_dynamic(bs, hn, false, false, a.h);
    std::memcpy(a.out + t * a.batch * os, a.h, bs * os * sizeof(float));
  }
}

}  // namespace npq
