#include "store/table_memory.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>

namespace keg::store {
namespace {

constexpr size_t kHugePage = size_t{2} << 20;

}  // namespace

void* AllocateTable(size_t bytes) {
  if (bytes < kMappedTableBytes) {
    void* p = std::calloc(1, bytes);
    if (p == nullptr) throw std::bad_alloc();
    return p;
  }
  void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) throw std::bad_alloc();
  if (bytes >= kHugePage) madvise(p, bytes, MADV_HUGEPAGE);  // a hint; failure is harmless
  return p;
}

void FreeTable(void* table, size_t bytes) noexcept {
  if (table == nullptr) return;
  if (bytes < kMappedTableBytes) {
    std::free(table);
  } else {
    munmap(table, bytes);
  }
}

}  // namespace keg::store
