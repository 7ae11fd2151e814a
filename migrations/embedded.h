// Private to migrations/: the table the build generates from the .sql files
// (embed_migrations.cmake). Use migrator.h.
#pragma once

#include <cstddef>

namespace txc {
namespace migrations_internal {

struct EmbeddedFile {
  const char* schema;     // folder under migrations/, e.g. "coordinator"
  const char* file_name;  // e.g. "0001_init.sql"
  const unsigned char* data;
  size_t size;
};

// kEmbeddedFileCount entries (plus a null terminator), sorted by schema/file.
extern const EmbeddedFile kEmbeddedFiles[];
extern const size_t kEmbeddedFileCount;

}  // namespace migrations_internal
}  // namespace txc
