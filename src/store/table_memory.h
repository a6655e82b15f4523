// Memory for the store's big open-addressing tables (keydir shards, element indexes).
//
// Zeroed (a zero word marks an empty slot in both), and given back to the OS the moment it is
// freed: a table past kMappedTableBytes is its own anonymous mapping, so its untouched pages cost
// no RSS (fresh pages are zero without being written), a grown table's old copy leaves RSS at
// once (a malloc that keeps freed memory for reuse, as jemalloc's decay does, would hold it for
// seconds), and tables past 2 MiB ask for transparent huge pages. Smaller tables come from calloc.
// Thread: any; a table's memory is freed by whoever allocated it or its owner.
#pragma once

#include <cstddef>

namespace keg::store {

inline constexpr size_t kMappedTableBytes = size_t{256} << 10;

/// `bytes` of zeroed memory (bytes > 0); throws std::bad_alloc when there is none.
void* AllocateTable(size_t bytes);
/// Frees what AllocateTable(bytes) returned (null is ignored); `bytes` must be the same.
void FreeTable(void* table, size_t bytes) noexcept;

}  // namespace keg::store
