#pragma once

namespace switchyard::protocol {

//! The SQL a backend speaks, where switchyard writes SQL for it.
enum class Dialect {
  kPostgres,
  kSqlite, //!< switchyard's SQLite engine: SQLite's SQL behind the PostgreSQL protocol
};

} // namespace switchyard::protocol
