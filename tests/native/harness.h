// A tiny test harness: named counters of passed checks, the first few
// failures printed in full, canary-guarded buffers, buffers that end at an
// unreadable page, and a deterministic RNG.
#pragma once

#include <sys/mman.h>
#include <unistd.h>

#include <cctype>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace npqtest {

// Counts checks per label (usually a kernel name).
class Tally {
 public:
  void pass(const std::string& label) { ++passed_[label]; }
  // Prints the first 20 failures; returns false so callers can stop a loop.
  bool fail(const std::string& label, const std::string& what) {
    ++failed_[label];
    if (++printed_ <= 20) std::printf("FAIL [%s] %s\n", label.c_str(), what.c_str());
    return false;
  }
  bool check(bool ok, const std::string& label, const std::string& what) {
    if (ok)
      pass(label);
    else
      fail(label, what);
    return ok;
  }
  // Checks passed (failed) under labels that name kernel `name`: contain it, not
  // followed by more of an identifier (so "..._avxvnni" is not "..._avxvnni_evex").
  size_t passed_naming(const std::string& name) const { return count_naming(passed_, name); }
  size_t failed_naming(const std::string& name) const { return count_naming(failed_, name); }
  size_t failures() const {
    size_t n = 0;
    for (const auto& f : failed_) n += f.second;
    return n;
  }
  void report() const {
    std::map<std::string, int> labels;
    for (const auto& p : passed_) labels[p.first];
    for (const auto& f : failed_) labels[f.first];
    for (const auto& l : labels) {
      auto p = passed_.find(l.first), f = failed_.find(l.first);
      std::printf("  %-40s %9zu passed %6zu failed\n", l.first.c_str(),
                  p == passed_.end() ? 0 : p->second, f == failed_.end() ? 0 : f->second);
    }
  }

 private:
  static size_t count_naming(const std::map<std::string, size_t>& m, const std::string& name) {
    size_t n = 0;
    for (const auto& e : m)
      for (size_t at = e.first.find(name); at != std::string::npos;
           at = e.first.find(name, at + 1)) {
        const size_t end = at + name.size();
        const char c = end < e.first.size() ? e.first[end] : ' ';
        if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_')) {
          n += e.second;
          break;
        }
      }
    return n;
  }
  std::map<std::string, size_t> passed_, failed_;
  int printed_ = 0;
};

// splitmix64: deterministic and good enough for test data.
class Rng {
 public:
  explicit Rng(uint64_t seed) : s_(seed) {}
  uint64_t next() {
    uint64_t z = (s_ += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
  }
  // Uniform integer in [lo, hi].
  int64_t range(int64_t lo, int64_t hi) {
    return lo + static_cast<int64_t>(next() % static_cast<uint64_t>(hi - lo + 1));
  }
  // Uniform float in [lo, hi).
  float uniform(float lo, float hi) {
    return lo + (hi - lo) * static_cast<float>((next() >> 40) * (1.0 / 16777216.0));
  }
  bool coin() { return next() & 1; }

 private:
  uint64_t s_;
};

// A byte buffer whose bytes outside the regions a test declares as written
// are canaries (0xA5 pattern), including 64 bytes after the end. check()
// reports whether any canary byte changed.
class Guarded {
 public:
  explicit Guarded(size_t bytes) : data_(bytes + kTail), written_(bytes + kTail, 0) {
    for (size_t i = 0; i < data_.size(); ++i) data_[i] = canary(i);
  }
  uint8_t* data() { return data_.data(); }
  // Marks [offset, offset + len) as a region the code under test may write.
  void allow(size_t offset, size_t len) { std::memset(&written_[offset], 1, len); }
  bool intact(std::string* where) const {
    for (size_t i = 0; i < data_.size(); ++i)
      if (!written_[i] && data_[i] != canary(i)) {
        *where = "canary overwritten at byte " + std::to_string(i);
        return false;
      }
    return true;
  }

 private:
  static constexpr size_t kTail = 64;
  static uint8_t canary(size_t i) { return static_cast<uint8_t>(0xA5 ^ (i * 31)); }
  std::vector<uint8_t> data_;
  std::vector<uint8_t> written_;
};

// `bytes` usable bytes that end exactly where a PROT_NONE page begins, so a
// kernel reading past the end of its input faults instead of reading junk.
class EndOfPage {
 public:
  explicit EndOfPage(size_t bytes) {
    const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
    map_ = (bytes + page - 1) / page * page + page;
    void* p = mmap(nullptr, map_, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::runtime_error("mmap failed");
    base_ = static_cast<uint8_t*>(p);
    if (mprotect(base_ + map_ - page, page, PROT_NONE) != 0) throw std::runtime_error("mprotect");
    data_ = base_ + map_ - page - bytes;
  }
  // A copy of [src, src + bytes) at the end of the page.
  EndOfPage(const void* src, size_t bytes) : EndOfPage(bytes) {
    if (bytes) std::memcpy(data_, src, bytes);
  }
  ~EndOfPage() { munmap(base_, map_); }
  EndOfPage(const EndOfPage&) = delete;
  EndOfPage& operator=(const EndOfPage&) = delete;
  uint8_t* data() { return data_; }
  const uint8_t* data() const { return data_; }

 private:
  uint8_t* base_;
  uint8_t* data_;
  size_t map_;
};

// Command-line options of npq_native_tests (test_main.cc).
struct Options {
  bool quick = false;  // shorter K grids (for qemu): k up to 257 in the GEMM edge grid
};
const Options& options();

}  // namespace npqtest
