#include "store/data_file.h"

#include <sys/mman.h>
#include <unistd.h>

#include <cerrno>

namespace keg::store {

Status DataFile::Map(std::string path, uint64_t id, uint32_t index, int fd, uint64_t size,
                     uint64_t map_size, std::shared_ptr<DataFile>* out) {
  const uint64_t page = static_cast<uint64_t>(sysconf(_SC_PAGESIZE));
  map_size = std::max(map_size, size);
  map_size = std::max<uint64_t>((map_size + page - 1) / page * page, page);
  void* map = mmap(nullptr, map_size, PROT_READ, MAP_SHARED, fd, 0);
  if (map == MAP_FAILED) {
    const int err = errno;
    close(fd);
    return Status::FromErrno("mmap", path, -1, err);
  }
  out->reset(new DataFile(std::move(path), id, index, fd, static_cast<char*>(map), map_size, size));
  return Status::OK();
}

DataFile::~DataFile() {
  munmap(map_, map_size_);
  close(fd_);
}

}  // namespace keg::store
