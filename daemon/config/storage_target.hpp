// Where the configuration's [storage] says the store is, as the store
// opens it: one conversion for referrald and referralctl.
#pragma once

#include "config/config.hpp"
#include "store/database.hpp"

namespace referrald {

inline store::StorageTarget storage_target(const StorageConfig& storage) {
  store::StorageTarget target;
  if (storage.backend == StorageBackend::postgresql) {
    target.backend = store::Dialect::postgresql;
    target.postgres.url = storage.url;
    target.postgres.password = storage.password;
  } else {
    target.file = storage.database;
  }
  return target;
}

}  // namespace referrald
