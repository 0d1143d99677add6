#pragma once

#include <cstddef>
#include <memory>
#include <vector>

namespace switchyard::proxy {

//! A read buffer borrowed from this thread's free list for one read-and-forward step, so an
//! idle session holds no buffer at all (1,000 idle clients must stay far below 20 MB).
class RelayBuffer {
public:
  static constexpr size_t kSize = size_t{16} * 1024;

  RelayBuffer() {
    auto& pool = free_list();
    if (pool.empty()) {
      data_ = std::make_unique<char[]>(kSize);
    } else {
      data_ = std::move(pool.back());
      pool.pop_back();
    }
  }
  ~RelayBuffer() {
    auto& pool = free_list();
    if (pool.size() < kMaxFree) pool.push_back(std::move(data_));
  }
  RelayBuffer(const RelayBuffer&) = delete;
  RelayBuffer& operator=(const RelayBuffer&) = delete;

  char* data() { return data_.get(); }

private:
  static constexpr size_t kMaxFree = 256;
  static std::vector<std::unique_ptr<char[]>>& free_list() {
    thread_local std::vector<std::unique_ptr<char[]>> pool;
    return pool;
  }
  std::unique_ptr<char[]> data_;
};

} // namespace switchyard::proxy
