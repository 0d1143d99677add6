#include "proxy/oid_translation.hpp"

#include <algorithm>
#include <charconv>
#include <map>
#include <optional>
#include <utility>

#include "protocol/copy_data.hpp"
#include "protocol/frame.hpp"
#include "protocol/wire.hpp"

namespace switchyard::proxy {
namespace {

using Name = std::pair<std::string, std::string>; // schema, object

void add_once(std::vector<uint32_t>& list, uint32_t oid) {
  if (std::find(list.begin(), list.end(), oid) == list.end()) list.push_back(oid);
}

std::string oid_list(const std::vector<uint32_t>& oids) {
  std::string list;
  for (uint32_t oid : oids) {
    if (!list.empty()) list += ", ";
    list += std::to_string(oid);
  }
  return list;
}

template <typename Number> std::optional<Number> number(const protocol::Value& value) {
  Number n = 0;
  if (!value) return std::nullopt;
  auto [end, ec] = std::from_chars(value->data(), value->data() + value->size(), n);
  if (ec != std::errc() || end != value->data() + value->size()) return std::nullopt;
  return n;
}

// A row of the catalog queries below: a type, or a table with one of its columns (none when
// the LEFT JOIN found no column).
struct CatalogObject {
  bool type = false;
  uint32_t oid = 0;
  Name name;
  std::optional<uint16_t> attnum;
  const protocol::Value* attname = nullptr;
};

// The catalog row `row` (kind 'r' or 't', oid, schema, name, attnum, attname); nullopt when
// it is not one.
std::optional<CatalogObject> catalog_object(const std::vector<protocol::Value>& row) {
  if (row.size() != 6 || !row[0] || !row[1] || !row[2] || !row[3]) return std::nullopt;
  auto oid = number<uint32_t>(row[1]);
  if (!oid) return std::nullopt;
  return CatalogObject{*row[0] == "t", *oid, Name{*row[2], *row[3]}, number<uint16_t>(row[4]),
                       &row[5]};
}

// The columns of a table, then a type: kind, oid, schema, name, attnum, attname.
std::string catalog_sql(std::string_view table_condition, std::string_view type_condition) {
  std::string sql;
  if (!table_condition.empty()) {
    sql += "SELECT 'r', c.oid, n.nspname, c.relname, a.attnum, a.attname "
           "FROM pg_catalog.pg_class c "
           "JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace "
           "LEFT JOIN pg_catalog.pg_attribute a "
           "ON a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped WHERE ";
    sql += table_condition;
  }
  if (!type_condition.empty()) {
    if (!sql.empty()) sql += " UNION ALL ";
    sql += "SELECT 't', t.oid, n.nspname, t.typname, NULL, NULL "
           "FROM pg_catalog.pg_type t "
           "JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace WHERE ";
    sql += type_condition;
  }
  return sql;
}

std::string names_condition(std::string_view schema_column, std::string_view name_column,
                            const std::vector<Name>& names) {
  if (names.empty()) return {};
  std::string condition = "(";
  condition += schema_column;
  condition += "::text, ";
  condition += name_column;
  condition += "::text) IN (";
  for (size_t i = 0; i < names.size(); ++i) {
    if (i > 0) condition += ", ";
    condition += '(' + protocol::string_constant(names[i].first) + ", " +
                 protocol::string_constant(names[i].second) + ')';
  }
  return condition + ')';
}

} // namespace

std::optional<std::string> OidTranslation::translate(std::string_view body,
                                                     Unknown& unknown) const {
  auto fields = protocol::parse_row_description(body);
  if (!fields) return std::string(body); // PostgreSQL's own bytes, passed on as they are
  bool unmatched = false;
  bool missing = false;
  bool changed = false;
  {
    std::lock_guard lock(mutex_);
    for (protocol::FieldDescription& field : *fields) {
      if (field.table_oid >= kFirstUserOid) {
        auto table = tables_.find(field.table_oid);
        // System columns (ctid, xmin) number below 1, alike in every table.
        bool system_column = static_cast<int16_t>(field.column) <= 0;
        auto column = table == tables_.end() || system_column
                          ? std::unordered_map<uint16_t, uint16_t>::const_iterator{}
                          : table->second.columns.find(field.column);
        if (table == tables_.end() ||
            (!system_column && table->second.oid != 0 && column == table->second.columns.end())) {
          add_once(unknown.tables, field.table_oid); // unknown, or a column added since
          missing = true;
        } else if (table->second.oid == 0 || (!system_column && column->second == 0)) {
          unmatched = true;
        } else {
          field.table_oid = table->second.oid;
          if (!system_column) field.column = column->second;
          changed = true;
        }
      }
      if (field.type_oid >= kFirstUserOid) {
        auto type = types_.find(field.type_oid);
        if (type == types_.end()) {
          add_once(unknown.types, field.type_oid);
          missing = true;
        } else if (type->second == 0) {
          unmatched = true;
        } else {
          field.type_oid = type->second;
          changed = true;
        }
      }
    }
  }
  if (missing || unmatched) return std::nullopt;
  if (!changed) return std::string(body);
  std::string message;
  protocol::append_row_description(message, *fields);
  return message.substr(protocol::kHeaderSize);
}

std::string OidTranslation::secondary_names_sql(const Unknown& unknown) {
  return catalog_sql(unknown.tables.empty() ? "" : "c.oid IN (" + oid_list(unknown.tables) + ")",
                     unknown.types.empty() ? "" : "t.oid IN (" + oid_list(unknown.types) + ")");
}

std::string OidTranslation::primary_objects_sql(const CatalogRows& secondary) {
  std::vector<Name> tables;
  std::vector<Name> types;
  for (const auto& row : secondary) {
    auto object = catalog_object(row);
    if (!object) continue;
    auto& names = object->type ? types : tables;
    if (std::find(names.begin(), names.end(), object->name) == names.end())
      names.push_back(object->name);
  }
  return catalog_sql(names_condition("n.nspname", "c.relname", tables),
                     names_condition("n.nspname", "t.typname", types));
}

void OidTranslation::learn(const Unknown& unknown, const CatalogRows& secondary,
                           const CatalogRows& primary) {
  struct PrimaryTable {
    uint32_t oid = 0;
    std::map<std::string, uint16_t> columns; // attname -> attnum
  };
  std::map<Name, PrimaryTable> primary_tables;
  std::map<Name, uint32_t> primary_types;
  for (const auto& row : primary) {
    auto object = catalog_object(row);
    if (!object) continue;
    if (object->type) {
      primary_types[object->name] = object->oid;
      continue;
    }
    PrimaryTable& table = primary_tables[object->name];
    table.oid = object->oid;
    if (object->attnum && *object->attname) table.columns[**object->attname] = *object->attnum;
  }

  std::lock_guard lock(mutex_);
  if (tables_.size() + types_.size() + unknown.tables.size() + unknown.types.size() > kMaxObjects) {
    tables_.clear();
    types_.clear();
  }
  for (uint32_t oid : unknown.tables)
    tables_[oid] = Table{}; // unmatched unless the rows below match it
  for (uint32_t oid : unknown.types)
    types_[oid] = 0;
  for (const auto& row : secondary) {
    auto object = catalog_object(row);
    if (!object) continue;
    if (object->type) {
      auto found = primary_types.find(object->name);
      types_[object->oid] = found == primary_types.end() ? 0 : found->second;
      continue;
    }
    Table& table = tables_[object->oid];
    auto found = primary_tables.find(object->name);
    if (found == primary_tables.end()) continue;
    table.oid = found->second.oid;
    if (!object->attnum || !*object->attname) continue;
    auto column = found->second.columns.find(**object->attname);
    table.columns[*object->attnum] = column == found->second.columns.end() ? 0 : column->second;
  }
}

} // namespace switchyard::proxy
