#include "weight_cache.h"

#include <cstdint>

#include "common.h"

namespace genrt {

void* WeightCache::get(const std::string& key, size_t bytes, const std::function<void(void*)>& fill) {
  // One lock for lookups and builds: a build happens once per layout, so later callers only pay for the
  // lookup, and a concurrent first caller waits instead of packing a second copy.
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(key);
  if (it != entries_.end()) {
    if (it->second.bytes != bytes)
      throw_value("weight cache: layout '" + key + "' asked for with " + std::to_string(bytes) + " bytes, built with " +
                  std::to_string(it->second.bytes) + " (was the cache shared by weights of different shapes?)");
    return it->second.data;
  }
  Entry e;
  e.store.reset(new unsigned char[bytes + 64]);
  const auto addr = reinterpret_cast<std::uintptr_t>(e.store.get());
  e.data = e.store.get() + ((64 - addr % 64) % 64);
  e.bytes = bytes;
  fill(e.data);  // if it throws, nothing is stored
  return entries_.emplace(key, std::move(e)).first->second.data;
}

size_t WeightCache::bytes() const {
  std::lock_guard<std::mutex> lock(mu_);
  size_t total = 0;
  for (const auto& kv : entries_) total += kv.second.bytes;
  return total;
}

size_t WeightCache::entries() const {
  std::lock_guard<std::mutex> lock(mu_);
  return entries_.size();
}

}  // namespace genrt
