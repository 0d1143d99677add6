#pragma once

#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "protocol/row_image.hpp"

namespace switchyard::proxy {

//! Rows of a catalog query, as run_query and the session's captured queries return them.
using CatalogRows = std::vector<std::vector<protocol::Value>>;

//! The primary's names for what a RowDescription of the secondary names: table OIDs, their
//! column numbers and the OIDs of user types (enums, domains, extension types). Two databases
//! built from the same schema give these other numbers, so a read the secondary answers
//! would otherwise describe its columns unlike the primary (a driver that looks a type up by
//! OID then finds another or none). Built-in objects (OIDs below 16384) are the same
//! everywhere and left alone. Learned by name from both catalogs; shared by the sessions of
//! one pair of databases. Thread-safe.
class OidTranslation {
public:
  static constexpr uint32_t kFirstUserOid = 16384; // PostgreSQL's FirstNormalObjectId
  static constexpr size_t kMaxObjects = 65536;

  //! What a RowDescription names that was not learned yet.
  struct Unknown {
    std::vector<uint32_t> tables;
    std::vector<uint32_t> types;
    bool empty() const { return tables.empty() && types.empty(); }
  };

  //! RowDescription body `body` of the secondary with the primary's identifiers. nullopt
  //! when it names objects not learned yet (then listed in `unknown`) or objects the
  //! primary lacks (`unknown` then empty: there is nothing more to learn).
  std::optional<std::string> translate(std::string_view body, Unknown& unknown) const;

  //! The query that reads the names of `unknown` from the secondary's catalog.
  static std::string secondary_names_sql(const Unknown& unknown);
  //! The query that finds in the primary's catalog the objects the secondary's rows (the
  //! answer to secondary_names_sql) name.
  static std::string primary_objects_sql(const CatalogRows& secondary);
  //! Learns the matches between the two answers. What `unknown` lists and the primary does
  //! not have is remembered as unmatched, so it is not asked for again.
  void learn(const Unknown& unknown, const CatalogRows& secondary, const CatalogRows& primary);

private:
  struct Table {
    uint32_t oid = 0;                               // the primary's; 0 when it has no such table
    std::unordered_map<uint16_t, uint16_t> columns; // secondary attnum -> primary attnum
  };
  mutable std::mutex mutex_;
  std::unordered_map<uint32_t, Table> tables_;
  std::unordered_map<uint32_t, uint32_t> types_; // secondary OID -> primary OID (0: none)
};

} // namespace switchyard::proxy
