#include "protocol/classify.hpp"

#include <boost/json.hpp>
#include <pg_query.h>
#include <pthread.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <functional>
#include <unordered_map>

#include "protocol/large_objects.hpp"

namespace switchyard::protocol {
namespace json = boost::json;

namespace {

template <size_t N> bool is_one_of(const std::string_view (&list)[N], std::string_view s) {
  return std::find(std::begin(list), std::end(list), s) != std::end(list);
}

// Functions a read may call and stay a read: pure or only reading. Anything else in a
// SELECT makes it a write (it may change data), mirrored as a statement.
constexpr std::string_view kReadOnlyFunctions[] = {
    "abs",
    "acos",
    "age",
    "array_agg",
    "array_append",
    "array_cat",
    "array_dims",
    "array_fill",
    "array_length",
    "array_lower",
    "array_ndims",
    "array_position",
    "array_positions",
    "array_prepend",
    "array_remove",
    "array_replace",
    "array_to_json",
    "array_to_string",
    "array_upper",
    "ascii",
    "asin",
    "atan",
    "atan2",
    "avg",
    "bit_and",
    "bit_length",
    "bit_or",
    "bool_and",
    "bool_or",
    "btrim",
    "cardinality",
    "cbrt",
    "ceil",
    "ceiling",
    "char_length",
    "character_length",
    "chr",
    "clock_timestamp",
    "coalesce",
    "concat",
    "concat_ws",
    "convert_from",
    "convert_to",
    "corr",
    "cos",
    "count",
    "covar_pop",
    "covar_samp",
    "current_database",
    "current_schema",
    "current_schemas",
    "current_setting",
    "current_user",
    "date_bin",
    "date_part",
    "date_trunc",
    "daterange",
    "decode",
    "degrees",
    "dense_rank",
    "div",
    "encode",
    "every",
    "exp",
    "extract",
    "factorial",
    "first_value",
    "floor",
    "format",
    "gcd",
    "generate_series",
    "generate_subscripts",
    "greatest",
    "has_table_privilege",
    "initcap",
    "int4range",
    "int8range",
    "isempty",
    "isfinite",
    "json_agg",
    "json_array_elements",
    "json_array_elements_text",
    "json_array_length",
    "json_build_array",
    "json_build_object",
    "json_each",
    "json_each_text",
    "json_extract_path",
    "json_extract_path_text",
    "json_object",
    "json_object_agg",
    "json_object_keys",
    "json_populate_record",
    "json_strip_nulls",
    "json_to_record",
    "json_to_recordset",
    "json_typeof",
    "jsonb_agg",
    "jsonb_array_elements",
    "jsonb_array_elements_text",
    "jsonb_array_length",
    "jsonb_build_array",
    "jsonb_build_object",
    "jsonb_each",
    "jsonb_each_text",
    "jsonb_extract_path",
    "jsonb_extract_path_text",
    "jsonb_insert",
    "jsonb_object",
    "jsonb_object_agg",
    "jsonb_object_keys",
    "jsonb_path_exists",
    "jsonb_path_match",
    "jsonb_path_query",
    "jsonb_path_query_array",
    "jsonb_path_query_first",
    "jsonb_populate_record",
    "jsonb_pretty",
    "jsonb_set",
    "jsonb_strip_nulls",
    "jsonb_to_record",
    "jsonb_to_recordset",
    "jsonb_typeof",
    "justify_days",
    "justify_hours",
    "justify_interval",
    "lag",
    "last_value",
    "lcm",
    "lead",
    "least",
    "left",
    "length",
    "ln",
    "localtime",
    "localtimestamp",
    "log",
    "log10",
    "lower",
    "lower_inc",
    "lpad",
    "ltrim",
    "make_date",
    "make_interval",
    "make_time",
    "make_timestamp",
    "make_timestamptz",
    "max",
    "md5",
    "min",
    "mod",
    "mode",
    "now",
    "nth_value",
    "ntile",
    "nullif",
    "numrange",
    "octet_length",
    "overlay",
    "percent_rank",
    "percentile_cont",
    "percentile_disc",
    "pg_backend_pid",
    "pg_column_size",
    "pg_size_pretty",
    "phraseto_tsquery",
    "pi",
    "plainto_tsquery",
    "position",
    "power",
    "quote_ident",
    "quote_literal",
    "quote_nullable",
    "radians",
    "range_merge",
    "rank",
    "regexp_count",
    "regexp_instr",
    "regexp_like",
    "regexp_match",
    "regexp_matches",
    "regexp_replace",
    "regexp_split_to_array",
    "regexp_substr",
    "regr_avgx",
    "regr_avgy",
    "regr_count",
    "regr_intercept",
    "regr_r2",
    "regr_slope",
    "repeat",
    "replace",
    "reverse",
    "right",
    "round",
    "row_number",
    "row_to_json",
    "rpad",
    "rtrim",
    "setweight",
    "sha224",
    "sha256",
    "sha384",
    "sha512",
    "sign",
    "sin",
    "split_part",
    "sqrt",
    "starts_with",
    "statement_timestamp",
    "stddev",
    "stddev_pop",
    "stddev_samp",
    "string_agg",
    "string_to_array",
    "string_to_table",
    "strpos",
    "substr",
    "substring",
    "sum",
    "tan",
    "timezone",
    "to_char",
    "to_date",
    "to_hex",
    "to_json",
    "to_jsonb",
    "to_number",
    "to_timestamp",
    "to_tsquery",
    "to_tsvector",
    "transaction_timestamp",
    "translate",
    "trim_array",
    "trunc",
    "ts_headline",
    "ts_rank",
    "ts_rank_cd",
    "tsrange",
    "tstzrange",
    "unnest",
    "upper",
    "upper_inc",
    "var_pop",
    "var_samp",
    "variance",
    "version",
    "websearch_to_tsquery",
    "width_bucket",
};

// Functions with effects only on the connection they run on; mirroring them would do harm
// (locks held twice, sleeps) and no good.
constexpr std::string_view kPrimaryOnlyFunctions[] = {
    "pg_advisory_lock",
    "pg_advisory_unlock",
    "pg_advisory_xact_lock",
    "pg_try_advisory_lock",
    "pg_try_advisory_xact_lock",
    "pg_advisory_unlock_all",
    "pg_sleep",
    "pg_notify",
    "pg_cancel_backend",
    "pg_terminate_backend",
    "txid_current",
    "pg_current_xact_id",
};

// Read-only functions that answer from the system catalogs, which differ between the two
// databases (OIDs, sizes, definitions): a read calling one stays on the primary, as one
// reading a catalog table does. psql's \d and pgbench's start-up call them.
constexpr std::string_view kCatalogFunctions[] = {
    "col_description",
    "format_type",
    "has_column_privilege",
    "has_database_privilege",
    "has_function_privilege",
    "has_schema_privilege",
    "has_sequence_privilege",
    "obj_description",
    "pg_collation_is_visible",
    "pg_database_size",
    "pg_encoding_to_char",
    "pg_function_is_visible",
    "pg_get_constraintdef",
    "pg_get_expr",
    "pg_get_function_arguments",
    "pg_get_function_identity_arguments",
    "pg_get_function_result",
    "pg_get_functiondef",
    "pg_get_indexdef",
    "pg_get_partkeydef",
    "pg_get_ruledef",
    "pg_get_serial_sequence",
    "pg_get_statisticsobjdef",
    "pg_get_triggerdef",
    "pg_get_userbyid",
    "pg_get_viewdef",
    "pg_has_role",
    "pg_indexes_size",
    "pg_relation_size",
    "pg_table_is_visible",
    "pg_table_size",
    "pg_tablespace_location",
    "pg_total_relation_size",
    "pg_type_is_visible",
    "pg_typeof",
    "shobj_description",
    "to_regclass",
    "to_regnamespace",
    "to_regproc",
    "to_regtype",
};

// Read-only functions whose answer depends on the connection or the instant it runs: a
// read calling one stays on the primary, where the client would have run it.
constexpr std::string_view kConnectionDependentFunctions[] = {
    "clock_timestamp",
    "pg_backend_pid",
};

// Column types that are an integer filled from a sequence of their own.
constexpr std::string_view kSerialTypes[] = {"smallserial", "serial",  "bigserial",
                                             "serial2",     "serial4", "serial8"};

constexpr std::string_view kDdlNodes[] = {
    "CreateStmt",
    "AlterTableStmt",
    "DropStmt",
    "IndexStmt",
    "CreateSeqStmt",
    "AlterSeqStmt",
    "ViewStmt",
    "CreateFunctionStmt",
    "AlterFunctionStmt",
    "CreateSchemaStmt",
    "RenameStmt",
    "CommentStmt",
    "GrantStmt",
    "GrantRoleStmt",
    "CreateTableAsStmt",
    "CreateEnumStmt",
    "AlterEnumStmt",
    "CompositeTypeStmt",
    "CreateDomainStmt",
    "AlterDomainStmt",
    "CreateExtensionStmt",
    "AlterExtensionStmt",
    "CreateTrigStmt",
    "CreatePolicyStmt",
    "AlterPolicyStmt",
    "RuleStmt",
    "TruncateStmt",
    "AlterObjectSchemaStmt",
    "AlterOwnerStmt",
    "CreateRangeStmt",
    "DefineStmt",
    "AlterDefaultPrivilegesStmt",
    "RefreshMatViewStmt",
    "CreateCastStmt",
    "CreateOpClassStmt",
    "CreateStatsStmt",
    "AlterStatsStmt",
    "CreateRoleStmt",
    "AlterRoleStmt",
    "DropRoleStmt",
    "DropOwnedStmt",
    "ReassignOwnedStmt",
    "AlterTableMoveAllStmt",
    "CreateEventTrigStmt",
    "AlterEventTrigStmt",
};

// Statements that only matter to the connection they run on, or to the primary's own
// maintenance: never mirrored.
constexpr std::string_view kPrimaryOnlyNodes[] = {
    "ListenStmt", "UnlistenStmt",   "NotifyStmt",      "LockStmt",
    "VacuumStmt", "CheckPointStmt", "ClusterStmt",     "ReindexStmt",
    "LoadStmt",   "FetchStmt",      "ClosePortalStmt", "DeclareCursorStmt",
};

// Session settings the secondary connection must share (search_path, time zone, ...).
constexpr std::string_view kMirroredSessionNodes[] = {
    "VariableSetStmt",
    "DiscardStmt",
    "PrepareStmt",
    "DeallocateStmt",
};

std::string_view string_at(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  if (value == nullptr || !value->is_string()) return {};
  const json::string& s = value->get_string();
  return {s.data(), s.size()};
}

bool has_items(const json::object& object, std::string_view key) {
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_array() && !value->get_array().empty();
}

// The list member `key` of `object`; empty when it has none.
const json::array& items_of(const json::object& object, std::string_view key) {
  static const json::array kNone;
  const json::value* value = object.if_contains(key);
  return value != nullptr && value->is_array() ? value->get_array() : kNone;
}

// The member `key` of `value` when `value` is an object and that member one too.
const json::object* member_object(const json::value& value, std::string_view key) {
  const json::value* member = value.is_object() ? value.get_object().if_contains(key) : nullptr;
  return member != nullptr && member->is_object() ? &member->get_object() : nullptr;
}

// An item of a target list (a ResTarget) that is `*` or `t.*`, standing for several columns
// (not a whole-row value inside an expression).
bool is_star(const json::value& item) {
  const json::object* target = member_object(item, "ResTarget");
  const json::value* val = target != nullptr ? target->if_contains("val") : nullptr;
  const json::object* ref = val != nullptr ? member_object(*val, "ColumnRef") : nullptr;
  const json::value* fields = ref != nullptr ? ref->if_contains("fields") : nullptr;
  return fields != nullptr && fields->is_array() && !fields->get_array().empty() &&
         member_object(fields->get_array().back(), "A_Star") != nullptr;
}

// A RETURNING column that is `*` or `t.*`.
bool returns_star(const json::object& statement) {
  return std::ranges::any_of(items_of(statement, "returningList"), is_star);
}

// Built-in functions off the read-only list that write no table: a statement calling them
// writes only the tables it names.
constexpr std::string_view kTableSafeFunctions[] = {
    "currval", "gen_random_uuid", "lastval", "nextval", "random", "setval",
};

// The large-object functions creating an object, its OID chosen by the server when asked.
constexpr std::string_view kLargeObjectCreators[] = {"lo_creat", "lo_create", "lo_from_bytea",
                                                     "lo_import"};

// The members of a FuncCall called plainly: no DISTINCT, ORDER BY, FILTER, OVER, VARIADIC.
constexpr std::string_view kPlainCallKeys[] = {"funcname", "args", "funcformat", "location"};

// What a walk over a statement's parse tree finds below its top node.
struct TreeFacts {
  bool writes = false;              // a nested INSERT/UPDATE/DELETE/MERGE (writing CTE)
  std::vector<TargetTable> written; // the tables those write
  bool writes_unnamed = false;      // calls a function that may write tables it does not name
  bool locking = false;             // FOR UPDATE/SHARE anywhere
  bool primary_only_call = false;
  bool volatile_call = false;
  bool catalog = false; // reads the system catalogs (OIDs differ between databases)
  std::vector<std::string> unknown_calls; // functions off the read-only allow-list
  std::vector<std::string> writing_calls; // those of them that may write unnamed tables
  size_t large_object_creations = 0;      // calls named as a function creating large objects
};

// The object's own name in a qualified name (a list of String nodes): its last; empty if none.
std::string_view last_name(const json::array& names) {
  if (names.empty() || !names.back().is_object()) return {};
  const json::value* s = names.back().get_object().if_contains("String");
  return s != nullptr && s->is_object() ? string_at(s->get_object(), "sval") : std::string_view();
}

// A function's name as one of PostgreSQL's own: unqualified or in pg_catalog. Empty for one
// a schema of the database's names, which may be anything (and write).
std::string_view builtin_name(const json::array& names) {
  if (names.size() == 2) {
    const json::value& schema = names.front();
    const json::value* s = schema.is_object() ? schema.get_object().if_contains("String") : nullptr;
    if (s == nullptr || !s->is_object() || string_at(s->get_object(), "sval") != "pg_catalog")
      return {};
  } else if (names.size() != 1) {
    return {};
  }
  return last_name(names);
}

// The system catalogs and information_schema, by name as a query names them: what they say
// about a database (OIDs above all) differs between the two.
bool names_catalog(const json::object& range) {
  std::string_view schema = string_at(range, "schemaname");
  if (schema == "pg_catalog" || schema == "information_schema") return true;
  return schema.empty() && string_at(range, "relname").starts_with("pg_");
}

// A cast to an OID alias type (regclass, regtype ...) looks the name up in the catalogs.
bool casts_to_oid_alias(const json::object& cast) {
  const json::value* type = cast.if_contains("typeName");
  const json::value* names =
      type != nullptr && type->is_object() ? type->get_object().if_contains("names") : nullptr;
  if (names == nullptr || !names->is_array() || names->get_array().empty()) return false;
  const json::value& last = names->get_array().back();
  const json::value* s = last.is_object() ? last.get_object().if_contains("String") : nullptr;
  return s != nullptr && s->is_object() && string_at(s->get_object(), "sval").starts_with("reg");
}

TargetTable target_of(const json::object& stmt);

// What the member `key` of an object holding `child` tells; `top`: the object is the
// statement's own node, or the SelectStmt right in it.
void note_member(std::string_view key, const json::value& child, bool top, TreeFacts& facts) {
  if (!top &&
      (key == "InsertStmt" || key == "UpdateStmt" || key == "DeleteStmt" || key == "MergeStmt")) {
    facts.writes = true;
    if (child.is_object()) facts.written.push_back(target_of(child.get_object()));
  } else if (key == "lockingClause" && child.is_array() && !child.get_array().empty()) {
    facts.locking = true;
  } else if ((key == "RangeVar" && child.is_object() && names_catalog(child.get_object())) ||
             (key == "TypeCast" && child.is_object() && casts_to_oid_alias(child.get_object()))) {
    facts.catalog = true;
  } else if (key == "FuncCall" && child.is_object()) {
    const json::value* names = child.get_object().if_contains("funcname");
    if (names != nullptr && names->is_array() && !names->get_array().empty()) {
      // In any schema: only pg_catalog's are followed (note_large_object_columns).
      if (is_one_of(kLargeObjectCreators, last_name(names->get_array())))
        ++facts.large_object_creations;
      std::string_view name = builtin_name(names->get_array());
      if (is_one_of(kPrimaryOnlyFunctions, name)) {
        facts.primary_only_call = true;
      } else if (is_one_of(kCatalogFunctions, name)) {
        facts.catalog = true;
      } else if (!is_one_of(kReadOnlyFunctions, name)) {
        bool writing = !is_one_of(kTableSafeFunctions, name);
        facts.writes_unnamed |= writing;
        name = last_name(names->get_array()); // as the client wrote it, schema aside
        auto note = [&](std::vector<std::string>& calls) {
          if (std::find(calls.begin(), calls.end(), name) == calls.end()) calls.emplace_back(name);
        };
        note(facts.unknown_calls);
        if (writing) note(facts.writing_calls);
      } else if (is_one_of(kConnectionDependentFunctions, name)) {
        facts.volatile_call = true;
      }
    }
  }
}

// Notes every member below `root` in document order, as a recursive walk would, with a stack
// of its own: trees nest as deeply as the statement does (see classify).
void walk(const json::value& root, TreeFacts& facts) {
  struct Pending {
    const json::value* value;
    bool top;
    std::string_view key; // of the member `value` is; empty for array items and the root
    bool parent_top;
  };
  std::vector<Pending> pending{{&root, true, {}, true}};
  while (!pending.empty()) {
    Pending next = pending.back();
    pending.pop_back();
    if (!next.key.empty()) note_member(next.key, *next.value, next.parent_top, facts);
    if (next.value->is_array()) {
      const json::array& items = next.value->get_array();
      for (auto item = items.rbegin(); item != items.rend(); ++item)
        pending.push_back({&*item, false, {}, false});
    } else if (next.value->is_object()) {
      const json::object& members = next.value->get_object();
      for (auto member = members.end(); member != members.begin();) {
        --member;
        std::string_view key = member->key();
        pending.push_back({&member->value(), next.top && key == "SelectStmt", key, next.top});
      }
    }
  }
}

TargetTable table_named(const json::object& rel) {
  TargetTable target;
  target.schema = std::string(string_at(rel, "schemaname"));
  target.name = std::string(string_at(rel, "relname"));
  target.temporary = string_at(rel, "relpersistence") == "t" || target.schema == "pg_temp";
  if (const json::value* alias = rel.if_contains("alias"); alias && alias->is_object()) {
    target.alias = std::string(string_at(alias->get_object(), "aliasname"));
  }
  return target;
}

TargetTable target_of(const json::object& stmt) {
  const json::value* relation = stmt.if_contains("relation");
  if (relation == nullptr || !relation->is_object()) return {};
  return table_named(relation->get_object());
}

// CREATE TABLE AS and SELECT INTO: the table `into` (an IntoClause) makes, and whether the
// primary's rows are to be copied into it (a table, WITH DATA, not temporary).
void note_filled_table(const json::value* into, bool table, Statement& out) {
  if (into == nullptr || !into->is_object()) return;
  const json::object& clause = into->get_object();
  const json::value* rel = clause.if_contains("rel");
  if (rel == nullptr || !rel->is_object()) return;
  out.target = table_named(rel->get_object());
  out.dropped_at_commit = string_at(clause, "onCommit") == "ONCOMMIT_DROP";
  const json::value* skip = clause.if_contains("skipData");
  bool with_data = skip == nullptr || !skip->is_bool() || !skip->get_bool();
  if (table && with_data && !out.target.temporary) out.fills_table = TableFill::kQuery;
}

// Parse-tree node `node` without the casts around it (null if one has no argument).
const json::value* without_casts(const json::value* node) {
  while (node != nullptr) {
    const json::object* cast = member_object(*node, "TypeCast");
    if (cast == nullptr) break;
    node = cast->if_contains("arg");
  }
  return node;
}

// Whether parse-tree node `node` is a literal, possibly cast: the same value wherever it is
// evaluated.
bool is_constant(const json::value* node) {
  node = without_casts(node);
  return node != nullptr && member_object(*node, "A_Const") != nullptr;
}

// Whether a column definition's value for the rows a table has may differ where it is
// evaluated again: a default other than a constant (a literal, or one cast), an identity,
// or a serial type.
bool default_is_chosen(const json::object& column) {
  if (const json::value* type = column.if_contains("typeName"); type && type->is_object()) {
    const json::value* names = type->get_object().if_contains("names");
    if (names != nullptr && names->is_array() &&
        is_one_of(kSerialTypes, last_name(names->get_array()))) {
      return true;
    }
  }
  const json::value* constraints = column.if_contains("constraints");
  if (constraints == nullptr || !constraints->is_array()) return false;
  for (const json::value& item : constraints->get_array()) {
    const json::value* c = item.is_object() ? item.get_object().if_contains("Constraint") : nullptr;
    if (c == nullptr || !c->is_object()) continue;
    std::string_view type = string_at(c->get_object(), "contype");
    if (type == "CONSTR_IDENTITY") return true;
    if (type != "CONSTR_DEFAULT") continue;
    if (!is_constant(c->get_object().if_contains("raw_expr"))) return true;
  }
  return false;
}

// ALTER TABLE ... ADD COLUMN whose default (see default_is_chosen) fills the rows the table
// has with values of the primary's choosing.
void note_filled_columns(const json::object& stmt, Statement& out) {
  if (string_at(stmt, "objtype") != "OBJECT_TABLE") return;
  const json::value* commands = stmt.if_contains("cmds");
  if (commands == nullptr || !commands->is_array()) return;
  for (const json::value& item : commands->get_array()) {
    const json::value* cmd =
        item.is_object() ? item.get_object().if_contains("AlterTableCmd") : nullptr;
    if (cmd == nullptr || !cmd->is_object() ||
        string_at(cmd->get_object(), "subtype") != "AT_AddColumn") {
      continue;
    }
    const json::value* def = cmd->get_object().if_contains("def");
    const json::value* column =
        def && def->is_object() ? def->get_object().if_contains("ColumnDef") : nullptr;
    if (column != nullptr && column->is_object() && default_is_chosen(column->get_object())) {
      out.target = target_of(stmt);
      out.fills_table = TableFill::kColumnDefault;
      return;
    }
  }
}

// Statement::reshapes_table of DDL `node`.
void note_reshaped_table(std::string_view node, const json::object& stmt, Statement& out) {
  if (node == "AlterTableStmt" || node == "RenameStmt") {
    const json::value* relation = stmt.if_contains("relation");
    if (relation != nullptr && relation->is_object()) {
      out.reshapes_table = std::string(string_at(relation->get_object(), "relname"));
    }
  } else if (node == "DropStmt" && string_at(stmt, "behavior") == "DROP_CASCADE") {
    out.reshapes_table = std::string(); // a column of a type or domain dropped may be anywhere
  }
}

// Statement::private_ddl (and its target) of DDL `node`; CREATE TABLE AS and SELECT INTO
// noted their table already (note_filled_table).
void note_private_ddl(std::string_view node, const json::object& stmt, Statement& out) {
  const json::value* created = nullptr;
  if (node == "CreateStmt" && !has_items(stmt, "inhRelations")) {
    created = stmt.if_contains("relation");
  } else if (node == "ViewStmt") {
    created = stmt.if_contains("view");
  } else if (node == "CreateSeqStmt") {
    created = stmt.if_contains("sequence");
  } else if (node == "CreateTableAsStmt" || node == "SelectStmt") {
    out.private_ddl = out.target.temporary;
    return;
  }
  if (created == nullptr || !created->is_object()) return;
  TargetTable target = table_named(created->get_object());
  if (!target.temporary) return;
  out.target = std::move(target);
  out.private_ddl = true;
  out.dropped_at_commit = string_at(stmt, "oncommit") == "ONCOMMIT_DROP";
}

// The relation a DROP names (a List of one or two String nodes: [schema,] name); nullopt for
// any other form (a database-qualified name).
std::optional<TargetTable> dropped_relation(const json::value& object) {
  const json::object* list = member_object(object, "List");
  const json::value* items = list != nullptr ? list->if_contains("items") : nullptr;
  if (items == nullptr || !items->is_array()) return std::nullopt;
  std::vector<std::string_view> parts;
  for (const json::value& item : items->get_array()) {
    const json::object* name = member_object(item, "String");
    if (name == nullptr) return std::nullopt;
    parts.push_back(string_at(*name, "sval"));
  }
  if (parts.empty() || parts.size() > 2) return std::nullopt;
  TargetTable relation;
  relation.name = std::string(parts.back());
  if (parts.size() == 2) relation.schema = std::string(parts.front());
  relation.temporary = relation.schema == "pg_temp";
  return relation;
}

// Statement::names_relations of DDL `node`, and private_ddl when they are all named in
// schema pg_temp. Forms that may reach beyond the relations named (CASCADE, inheritance,
// partitions) name none.
void note_named_relations(std::string_view node, const json::object& stmt, Statement& out) {
  constexpr std::string_view kDroppedKinds[] = {"OBJECT_TABLE", "OBJECT_VIEW", "OBJECT_SEQUENCE",
                                                "OBJECT_INDEX"};
  constexpr std::string_view kReachingCommands[] = {"AT_AddInherit", "AT_DropInherit",
                                                    "AT_AttachPartition", "AT_DetachPartition"};
  if (string_at(stmt, "behavior") == "DROP_CASCADE") return;
  std::vector<TargetTable> named;
  if (node == "DropStmt" && is_one_of(kDroppedKinds, string_at(stmt, "removeType"))) {
    const json::value* objects = stmt.if_contains("objects");
    if (objects == nullptr || !objects->is_array()) return;
    for (const json::value& object : objects->get_array()) {
      auto relation = dropped_relation(object);
      if (!relation) return;
      named.push_back(std::move(*relation));
    }
  } else if (node == "AlterTableStmt") {
    const json::value* commands = stmt.if_contains("cmds");
    if (commands == nullptr || !commands->is_array()) return;
    for (const json::value& item : commands->get_array()) {
      const json::object* cmd = member_object(item, "AlterTableCmd");
      if (cmd == nullptr || is_one_of(kReachingCommands, string_at(*cmd, "subtype"))) return;
    }
    named.push_back(target_of(stmt));
  } else if (node == "IndexStmt") {
    named.push_back(target_of(stmt));
  } else if (node == "TruncateStmt") {
    const json::value* relations = stmt.if_contains("relations");
    if (relations == nullptr || !relations->is_array()) return;
    for (const json::value& item : relations->get_array()) {
      const json::object* range = member_object(item, "RangeVar");
      if (range == nullptr) return;
      named.push_back(table_named(*range));
    }
  }
  if (named.empty() ||
      std::ranges::any_of(named, [](const TargetTable& t) { return t.name.empty(); }))
    return;
  out.private_ddl = std::ranges::all_of(named, [](const TargetTable& t) { return t.temporary; });
  out.names_relations = std::move(named);
}

std::vector<std::string> set_columns_of(const json::object& stmt) {
  std::vector<std::string> columns;
  const json::value* list = stmt.if_contains("targetList");
  if (list == nullptr || !list->is_array()) return columns;
  for (const json::value& item : list->get_array()) {
    if (!item.is_object()) continue;
    const json::value* target = item.get_object().if_contains("ResTarget");
    if (target != nullptr && target->is_object()) {
      columns.emplace_back(string_at(target->get_object(), "name"));
    }
  }
  return columns;
}

// The columns an InsertStmt lists; empty when it lists none.
std::vector<std::string> listed_columns(const json::object& insert) {
  std::vector<std::string> listed;
  for (const json::value& col : items_of(insert, "cols")) {
    if (const json::object* target = member_object(col, "ResTarget"))
      listed.emplace_back(string_at(*target, "name"));
  }
  return listed;
}

// Statement::valued_columns and friends of an InsertStmt.
void note_valued_columns(const json::object& insert, Statement& out) {
  std::vector<std::string> listed = listed_columns(insert);
  const json::value* select = insert.if_contains("selectStmt");
  if (select != nullptr && select->is_object())
    select = select->get_object().if_contains("SelectStmt");
  if (select == nullptr || !select->is_object()) return; // DEFAULT VALUES
  const json::value* rows = select->get_object().if_contains("valuesLists");
  if (rows == nullptr || !rows->is_array()) { // a query gives every column it fills
    out.values_every_column = out.computes_every_column = listed.empty();
    out.computed_columns = listed;
    out.valued_columns = std::move(listed);
    return;
  }
  // A constant or a parameter, possibly cast, is the same value wherever the row is written.
  auto given = [](const json::value& value) {
    const json::value* node = &value;
    if (const json::object* cast = member_object(*node, "TypeCast")) {
      node = cast->if_contains("arg");
      if (node == nullptr) return false;
    }
    return member_object(*node, "A_Const") != nullptr ||
           member_object(*node, "ParamRef") != nullptr;
  };
  std::vector<std::vector<bool>> valued; // per column, per row: not DEFAULT
  std::vector<bool> computed;
  for (const json::value& row : rows->get_array()) {
    const json::value* list = row.is_object() ? row.get_object().if_contains("List") : nullptr;
    const json::value* items =
        list != nullptr && list->is_object() ? list->get_object().if_contains("items") : nullptr;
    if (items == nullptr || !items->is_array()) continue;
    const json::array& values = items->get_array();
    if (valued.size() < values.size()) {
      valued.resize(values.size());
      computed.resize(values.size());
    }
    for (size_t i = 0; i < values.size(); ++i) {
      bool defaulted = values[i].is_object() && values[i].get_object().contains("SetToDefault");
      valued[i].push_back(!defaulted);
      computed[i] = computed[i] || (!defaulted && !given(values[i]));
    }
  }
  for (size_t i = 0; i < valued.size(); ++i) {
    if (!listed.empty() && i >= listed.size()) continue;
    if (std::ranges::none_of(valued[i], std::identity{})) continue;
    if (std::ranges::find(valued[i], false) != valued[i].end()) {
      out.partly_valued.push_back(
          PartlyValued{listed.empty() ? std::string() : listed[i], i, std::move(valued[i])});
    } else if (listed.empty()) {
      out.valued_positions.push_back(i);
    } else {
      out.valued_columns.push_back(listed[i]);
    }
    if (!computed[i]) continue;
    if (listed.empty()) {
      out.computed_positions.push_back(i);
    } else {
      out.computed_columns.push_back(listed[i]);
    }
  }
}

// A SelectStmt that computes its list once for each row it yields and for no other: no
// DISTINCT, GROUP BY, window, ORDER BY or LIMIT (a sort computes it for rows it then drops),
// nor a set operation.
bool projects_each_row_once(const json::object& select) {
  return std::ranges::all_of(select, [](const auto& member) {
    std::string_view key = member.key();
    const json::value& value = member.value();
    if (key == "limitOption" || key == "op") {
      return value.is_string() &&
             value.get_string() == (key == "op" ? "SETOP_NONE" : "LIMIT_OPTION_DEFAULT");
    }
    return key == "targetList" || key == "fromClause" || key == "whereClause";
  });
}

// Statement::large_object_columns of an INSERT (VALUES or SELECT) or an UPDATE, kept when
// they are the `made` calls creating large objects the statement holds (none elsewhere, nor in
// another schema): their functions then leave `writing_calls`. Not for an upsert, whose image
// lacks the rows it skipped.
void note_large_object_columns(const json::object& stmt, size_t made, Statement& out) {
  if (made == 0 || stmt.contains("onConflictClause")) return;
  std::vector<LargeObjectColumn> found;
  auto note = [&](const json::value& value, std::string column, size_t position,
                  std::optional<size_t> row, size_t rows) {
    LargeObjectColumn where;
    where.column = std::move(column);
    where.position = position;
    where.row = row;
    where.rows = rows;
    const json::value* node = without_casts(&value);
    const json::object* call = node != nullptr ? member_object(*node, "FuncCall") : nullptr;
    if (call == nullptr || std::ranges::any_of(*call, [](const auto& member) {
          return !is_one_of(kPlainCallKeys, member.key());
        })) {
      return;
    }
    const json::value* names = call->if_contains("funcname");
    const json::value* args = call->if_contains("args");
    if (names == nullptr || !names->is_array() || (args != nullptr && !args->is_array())) return;
    std::string_view name = builtin_name(names->get_array());
    auto function =
        is_one_of(kLargeObjectCreators, name)
            ? large_object_function_oid(name, args != nullptr ? args->get_array().size() : 0)
            : std::nullopt;
    if (!function) return;
    where.function = *large_object_function(*function);
    if (where.function == LargeObjectFunction::kFromBytea) {
      const json::value* data = without_casts(&args->get_array().at(1));
      const json::object* parameter = data != nullptr ? member_object(*data, "ParamRef") : nullptr;
      const json::value* number = parameter != nullptr ? parameter->if_contains("number") : nullptr;
      if (number != nullptr && number->is_int64() && number->get_int64() > 0)
        where.data = static_cast<size_t>(number->get_int64());
    }
    found.push_back(std::move(where));
  };
  if (out.node == "UpdateStmt") {
    for (const json::value& item : items_of(stmt, "targetList")) {
      const json::object* target = member_object(item, "ResTarget");
      const json::value* val = target != nullptr ? target->if_contains("val") : nullptr;
      if (val == nullptr || target->contains("indirection")) continue; // SET a[1] = ...
      note(*val, std::string(string_at(*target, "name")), 0, std::nullopt, 0);
    }
  } else {
    std::vector<std::string> listed = listed_columns(stmt);
    const json::value* select = stmt.if_contains("selectStmt");
    const json::object* query = select != nullptr ? member_object(*select, "SelectStmt") : nullptr;
    if (query == nullptr) return;
    const json::array& rows = items_of(*query, "valuesLists");
    if (rows.empty()) { // INSERT … SELECT: a call in its list makes an object per row it yields
      if (!projects_each_row_once(*query)) return;
      const json::array& targets = items_of(*query, "targetList");
      for (size_t i = 0; i < targets.size() && (listed.empty() || i < listed.size()); ++i) {
        const json::object* target = member_object(targets[i], "ResTarget");
        const json::value* val = target != nullptr ? target->if_contains("val") : nullptr;
        // `t.*`, `(row).*`: the positions after it are not known
        if (val == nullptr || is_star(targets[i]) || member_object(*val, "A_Indirection")) return;
        note(*val, listed.empty() ? std::string() : listed[i], i, std::nullopt, 0);
      }
    }
    for (size_t row = 0; row < rows.size(); ++row) {
      const json::object* list = member_object(rows[row], "List");
      if (list == nullptr) continue;
      const json::array& values = items_of(*list, "items");
      for (size_t i = 0; i < values.size() && (listed.empty() || i < listed.size()); ++i) {
        note(values[i], listed.empty() ? std::string() : listed[i], i, row, rows.size());
      }
    }
  }
  if (found.size() != made) return;
  out.large_object_columns = std::move(found);
  std::erase_if(out.writing_calls,
                [](const std::string& name) { return is_one_of(kLargeObjectCreators, name); });
}

// The SQL text of a COPY option's argument; nullopt for a kind of argument not expected.
std::optional<std::string> option_argument(const json::value* arg) {
  if (arg == nullptr || !arg->is_object()) return std::string();
  const json::object& node = arg->get_object();
  if (const json::value* s = node.if_contains("String"); s && s->is_object()) {
    return string_constant(string_at(s->get_object(), "sval"));
  }
  if (const json::value* b = node.if_contains("Boolean"); b && b->is_object()) {
    const json::value* value = b->get_object().if_contains("boolval");
    return value != nullptr && value->is_bool() && value->get_bool() ? "true" : "false";
  }
  if (const json::value* i = node.if_contains("Integer"); i && i->is_object()) {
    const json::value* value = i->get_object().if_contains("ival");
    return value != nullptr && value->is_int64() ? std::to_string(value->get_int64()) : "0";
  }
  if (const json::value* list = node.if_contains("List"); list && list->is_object()) {
    const json::value* items = list->get_object().if_contains("items");
    std::string out = "(";
    for (const json::value& item :
         items && items->is_array() ? items->get_array() : json::array()) {
      const json::value* s = item.is_object() ? item.get_object().if_contains("String") : nullptr;
      if (s == nullptr || !s->is_object()) return std::nullopt;
      if (out.size() > 1) out += ", ";
      out += quote_identifier(string_at(s->get_object(), "sval"));
    }
    return out + ")";
  }
  return std::nullopt;
}

// A boolean option as PostgreSQL's defGetBoolean reads it: true when given without a value.
bool option_is_true(const json::object& def) {
  const json::value* arg = def.if_contains("arg");
  if (arg == nullptr || !arg->is_object()) return true;
  const json::object& node = arg->get_object();
  if (const json::value* s = node.if_contains("String"); s && s->is_object()) {
    std::string text(string_at(s->get_object(), "sval"));
    std::transform(text.begin(), text.end(), text.begin(),
                   [](unsigned char c) { return static_cast<char>(std::tolower(c)); });
    return text != "false" && text != "off" && text != "0";
  }
  if (const json::value* b = node.if_contains("Boolean"); b && b->is_object()) {
    const json::value* value = b->get_object().if_contains("boolval");
    return value != nullptr && value->is_bool() && value->get_bool();
  }
  if (const json::value* i = node.if_contains("Integer"); i && i->is_object()) {
    const json::value* value = i->get_object().if_contains("ival"); // left out when 0
    return value != nullptr && value->is_int64() && value->get_int64() != 0;
  }
  return true;
}

// A COPY FROM STDIN's column list and options, and how its data is split (copy_rows).
CopyFrom copy_from_of(const json::object& stmt) {
  CopyFrom copy;
  if (const json::value* list = stmt.if_contains("attlist"); list && list->is_array()) {
    for (const json::value& item : list->get_array()) {
      const json::value* s = item.is_object() ? item.get_object().if_contains("String") : nullptr;
      if (s != nullptr && s->is_object())
        copy.columns.emplace_back(string_at(s->get_object(), "sval"));
    }
  }
  copy.extendable = !stmt.contains("whereClause");
  bool escape_given = false;
  const json::value* options = stmt.if_contains("options");
  for (const json::value& item :
       options && options->is_array() ? options->get_array() : json::array()) {
    const json::value* def = item.is_object() ? item.get_object().if_contains("DefElem") : nullptr;
    if (def == nullptr || !def->is_object()) continue;
    const json::object& elem = def->get_object();
    std::string name(string_at(elem, "defname"));
    const json::value* arg = elem.if_contains("arg");
    std::optional<std::string> argument = option_argument(arg);
    if (!argument) {
      copy.extendable = false;
      continue;
    }
    std::string_view text;
    if (arg != nullptr && arg->is_object()) {
      if (const json::value* s = arg->get_object().if_contains("String"); s && s->is_object())
        text = string_at(s->get_object(), "sval");
    }
    if (name == "format") {
      if (text == "csv") {
        copy.format.kind = CopyFormat::Kind::kCsv;
      } else if (text == "binary") {
        copy.format.kind = CopyFormat::Kind::kBinary;
      } else {
        copy.extendable &= text == "text"; // else PostgreSQL refuses the COPY
      }
    } else if (name == "delimiter" && !text.empty()) {
      copy.format.delimiter = text[0];
    } else if (name == "quote" && !text.empty()) {
      copy.format.quote = text[0];
    } else if (name == "escape" && !text.empty()) {
      copy.format.escape = text[0];
      escape_given = true;
    } else if (name == "header") {
      copy.format.header = option_is_true(elem);
      copy.extendable &= text != "match"; // it checks the header against the column list
    }
    copy.options.emplace_back(std::move(name), std::move(*argument));
  }
  if (copy.format.kind == CopyFormat::Kind::kCsv) {
    bool delimiter_given = std::any_of(copy.options.begin(), copy.options.end(),
                                       [](const auto& o) { return o.first == "delimiter"; });
    if (!delimiter_given) copy.format.delimiter = ',';
    if (!escape_given) copy.format.escape = copy.format.quote;
  }
  return copy;
}

TransactionOp transaction_op(std::string_view kind) {
  if (kind == "TRANS_STMT_BEGIN" || kind == "TRANS_STMT_START") return TransactionOp::kBegin;
  if (kind == "TRANS_STMT_COMMIT") return TransactionOp::kCommit;
  if (kind == "TRANS_STMT_ROLLBACK") return TransactionOp::kRollback;
  if (kind == "TRANS_STMT_SAVEPOINT") return TransactionOp::kSavepoint;
  if (kind == "TRANS_STMT_RELEASE") return TransactionOp::kRelease;
  if (kind == "TRANS_STMT_ROLLBACK_TO") return TransactionOp::kRollbackTo;
  if (kind == "TRANS_STMT_PREPARE") return TransactionOp::kPrepare;
  return TransactionOp::kFinishPrepared;
}

// The DefElem named `name` in the statement's "options" list, or nullptr.
const json::object* option_named(const json::object& stmt, std::string_view name) {
  const json::value* options = stmt.if_contains("options");
  if (options == nullptr || !options->is_array()) return nullptr;
  for (const json::value& option : options->get_array()) {
    const json::value* def =
        option.is_object() ? option.get_object().if_contains("DefElem") : nullptr;
    if (def != nullptr && def->is_object() && string_at(def->get_object(), "defname") == name) {
      return &def->get_object();
    }
  }
  return nullptr;
}

// BEGIN ... READ ONLY: the parser encodes it as transaction_read_only = integer 1 (READ WRITE
// is 0, which the JSON leaves out).
bool begins_read_only(const json::object& stmt) {
  const json::object* def = option_named(stmt, "transaction_read_only");
  if (def == nullptr) return false;
  const json::value* arg = def->if_contains("arg");
  const json::value* constant =
      arg != nullptr && arg->is_object() ? arg->get_object().if_contains("A_Const") : nullptr;
  const json::value* ival = constant != nullptr && constant->is_object()
                                ? constant->get_object().if_contains("ival")
                                : nullptr;
  const json::value* value =
      ival != nullptr && ival->is_object() ? ival->get_object().if_contains("ival") : nullptr;
  return value != nullptr && value->is_int64() && value->get_int64() == 1;
}

// The one call a SELECT is and nothing more (see function_call_statement): its FuncCall,
// whose arguments are each a literal or a parameter, possibly cast.
const json::object* sole_call(const json::object& select) {
  static constexpr std::string_view kSelectKeys[] = {"targetList", "limitOption", "op"};
  for (const auto& member : select) {
    if (!is_one_of(kSelectKeys, member.key())) return nullptr;
  }
  const json::value* targets = select.if_contains("targetList");
  if (targets == nullptr || !targets->is_array() || targets->get_array().size() != 1)
    return nullptr;
  const json::object* target = member_object(targets->get_array().front(), "ResTarget");
  const json::value* val = target != nullptr ? target->if_contains("val") : nullptr;
  const json::object* call = val != nullptr ? member_object(*val, "FuncCall") : nullptr;
  if (call == nullptr || string_at(*call, "funcformat") != "COERCE_EXPLICIT_CALL") return nullptr;
  for (const auto& member : *call) {
    if (!is_one_of(kPlainCallKeys, member.key())) return nullptr;
  }
  const json::value* names = call->if_contains("funcname");
  if (names == nullptr || !names->is_array() || builtin_name(names->get_array()).empty())
    return nullptr;
  if (const json::value* args = call->if_contains("args"); args != nullptr) {
    if (!args->is_array()) return nullptr;
    for (const json::value& arg : args->get_array()) {
      const json::value* node = without_casts(&arg);
      if (node == nullptr || (member_object(*node, "A_Const") == nullptr &&
                              member_object(*node, "ParamRef") == nullptr))
        return nullptr;
    }
  }
  return call;
}

// The text of literal `constant` of `statement` (nullopt for NULL) into `out`; false for a
// kind no argument is written as (a bit string). libpg_query's JSON leaves a negative
// integer's value out, as it does a zero's: those are read from the statement's text.
bool literal_text(const json::object& constant, std::string_view statement,
                  std::optional<std::string>& out) {
  auto inner = [&](std::string_view key) -> const json::object* {
    const json::value* v = constant.if_contains(key);
    return v != nullptr && v->is_object() ? &v->get_object() : nullptr;
  };
  if (const json::value* null = constant.if_contains("isnull");
      null && null->is_bool() && null->get_bool()) {
    out.reset();
    return true;
  }
  if (const json::object* sval = inner("sval")) {
    out = std::string(string_at(*sval, "sval"));
    return true;
  }
  if (const json::object* fval = inner("fval")) {
    out = std::string(string_at(*fval, "fval"));
    return true;
  }
  if (const json::object* boolval = inner("boolval")) {
    const json::value* v = boolval->if_contains("boolval");
    out = v != nullptr && v->is_bool() && v->get_bool() ? "true" : "false";
    return true;
  }
  const json::object* ival = inner("ival");
  if (ival == nullptr) return false;
  if (const json::value* v = ival->if_contains("ival"); v != nullptr && v->is_int64()) {
    out = std::to_string(v->get_int64());
    return true;
  }
  const json::value* location = constant.if_contains("location");
  if (location == nullptr || !location->is_int64() || location->get_int64() < 0) return false;
  auto at = static_cast<size_t>(location->get_int64());
  std::string digits;
  if (at < statement.size() && statement[at] == '-') {
    digits = "-";
    at = statement.find_first_not_of(" \t\r\n", at + 1);
  }
  while (at < statement.size() && std::isdigit(static_cast<unsigned char>(statement[at])))
    digits += statement[at++];
  if (digits.empty() || digits == "-") return false;
  out = std::move(digits);
  return true;
}

void classify_node(std::string_view node, const json::object& body, Statement& out);

// A statement mirrored as itself: the tables it writes, each once, unless a function it
// calls may write others.
void note_written_tables(const TreeFacts& facts, Statement& out) {
  // A write without a table named (not one PostgreSQL parses) leaves the list unknown.
  if (facts.writes_unnamed ||
      std::ranges::any_of(facts.written, [](const auto& table) { return table.name.empty(); }))
    return;
  for (const TargetTable& table : facts.written) {
    bool listed = std::ranges::any_of(out.written_tables, [&](const TargetTable& other) {
      return other.schema == table.schema && other.name == table.name;
    });
    if (!listed) out.written_tables.push_back(table);
  }
}

// The statement EXPLAIN, PREPARE or COPY (query) holds (its "query"), classified on its own.
Statement classify_nested(const json::object& body) {
  Statement nested;
  const json::value* query = body.if_contains("query");
  if (query != nullptr && query->is_object() && query->get_object().size() == 1) {
    const auto& [node, inner] = *query->get_object().begin();
    if (inner.is_object()) classify_node({node.data(), node.size()}, inner.get_object(), nested);
  }
  return nested;
}

void classify_node(std::string_view node, const json::object& body, Statement& out) {
  out.node = std::string(node);
  TreeFacts facts;
  walk(body, facts);
  out.locking = facts.locking;
  out.nested_write = facts.writes;
  out.pinned_call = facts.primary_only_call || facts.volatile_call;
  out.reads_catalog = facts.catalog;
  out.unlisted_functions = std::move(facts.unknown_calls);
  out.writing_calls = std::move(facts.writing_calls);

  if (node == "SelectStmt") {
    out.ordered = has_items(body, "sortClause");
    if (body.contains("intoClause")) {
      out.kind = StatementKind::kDdl; // SELECT INTO creates a table
      out.mirror = MirrorPlan::kStatement;
      note_filled_table(body.if_contains("intoClause"), true, out);
      note_private_ddl(node, body, out);
    } else if (facts.writes || !out.unlisted_functions.empty()) {
      out.kind = StatementKind::kWrite;
      out.mirror = MirrorPlan::kStatement;
      note_written_tables(facts, out);
      if (const json::object* call = sole_call(body)) {
        const json::value* args = call->if_contains("args");
        out.large_object_call =
            large_object_function_oid(builtin_name(call->at("funcname").get_array()),
                                      args != nullptr ? args->get_array().size() : 0)
                .has_value();
      }
    } else if (facts.locking || facts.primary_only_call) {
      out.kind = StatementKind::kWrite; // takes locks or acts on the primary only
      out.mirror = MirrorPlan::kNone;
    } else {
      out.kind = StatementKind::kRead;
      out.mirror = MirrorPlan::kNone;
    }
    return;
  }
  if (node == "InsertStmt" || node == "UpdateStmt" || node == "DeleteStmt") {
    out.kind = StatementKind::kWrite;
    out.target = target_of(body);
    out.has_returning = has_items(body, "returningList");
    out.returning_star = returns_star(body);
    if (node == "UpdateStmt") out.set_columns = set_columns_of(body);
    const json::value* upsert = body.if_contains("onConflictClause");
    if (upsert != nullptr && upsert->is_object()) // DO UPDATE SET (none for DO NOTHING)
      out.set_columns = set_columns_of(upsert->get_object());
    if (node == "InsertStmt") note_valued_columns(body, out);
    out.image_op = node == "DeleteStmt" ? RowImageOp::kDelete : RowImageOp::kUpsert;
    // A writing CTE inside changes rows the RETURNING clause cannot see.
    out.mirror = facts.writes ? MirrorPlan::kStatement : MirrorPlan::kRowImage;
    if (node != "DeleteStmt" && !facts.writes) // the image names the objects
      note_large_object_columns(body, facts.large_object_creations, out);
    if (facts.writes) {
      facts.written.push_back(out.target);
      note_written_tables(facts, out);
    }
    return;
  }
  if (node == "PrepareStmt" || node == "ExecuteStmt" || node == "DeallocateStmt") {
    out.prepared_name = std::string(string_at(body, "name"));
    out.drops_all_prepared = node == "DeallocateStmt" && out.prepared_name.empty();
  }
  out.drops_all_prepared |= node == "DiscardStmt" && string_at(body, "target") == "DISCARD_ALL";
  out.drops_temporaries = node == "DiscardStmt" && (string_at(body, "target") == "DISCARD_ALL" ||
                                                    string_at(body, "target") == "DISCARD_TEMP");
  if (node == "PrepareStmt") {
    Statement prepared = classify_nested(body);
    out.prepared_read = prepared.kind == StatementKind::kRead &&
                        prepared.mirror == MirrorPlan::kNone && !prepared.locking;
    if (prepared.mirror == MirrorPlan::kRowImage) {
      auto write = std::make_shared<Classification>();
      write->statements.push_back(std::move(prepared));
      out.prepared_write = std::move(write);
    }
  }
  if (node == "MergeStmt" || node == "CallStmt" || node == "DoStmt" || node == "ExecuteStmt") {
    out.kind = StatementKind::kWrite;
    out.mirror = MirrorPlan::kStatement;
    if (node == "MergeStmt") {
      facts.written.push_back(target_of(body));
      note_written_tables(facts, out);
    }
    return;
  }
  if (node == "CopyStmt") {
    bool from =
        body.contains("is_from") && body.at("is_from").is_bool() && body.at("is_from").get_bool();
    bool program_or_file = body.contains("filename") || body.contains("is_program");
    if (!from) {
      // COPY (query) TO runs its query, which may write (INSERT ... RETURNING, a writing CTE,
      // nextval()): the secondary must write it too. The answer is COPY data, not rows, so
      // it is mirrored as itself.
      Statement copied = body.contains("query") ? classify_nested(body) : Statement{};
      bool reads = !body.contains("query") || copied.kind == StatementKind::kRead;
      out.kind = reads ? StatementKind::kRead : StatementKind::kWrite;
      out.mirror =
          reads || copied.mirror == MirrorPlan::kNone ? MirrorPlan::kNone : MirrorPlan::kStatement;
      // Mirrored as itself, no row image names its rows: the tables, should the secondary miss it.
      out.written_tables = std::move(copied.written_tables);
      if (copied.mirror == MirrorPlan::kRowImage && copied.writing_calls.empty())
        out.written_tables.push_back(copied.target);
    } else {
      out.kind = StatementKind::kWrite;
      // A server-side file is not ours to read; the secondary cannot see it.
      out.mirror = program_or_file ? MirrorPlan::kStatement : MirrorPlan::kCopyIn;
      if (!program_or_file) {
        out.target = target_of(body);
        out.copy_from = copy_from_of(body);
      }
    }
    return;
  }
  if (node == "TransactionStmt") {
    out.kind = StatementKind::kTransaction;
    out.mirror = MirrorPlan::kNone;
    out.transaction = transaction_op(string_at(body, "kind"));
    out.read_only = out.transaction == TransactionOp::kBegin && begins_read_only(body);
    out.savepoint_name = string_at(body, "savepoint_name");
    out.prepared_transaction = string_at(body, "gid");
    return;
  }
  if (node == "ExplainStmt") {
    const json::object* analyze = option_named(body, "analyze");
    if (analyze == nullptr || !option_is_true(*analyze)) {
      out.kind = StatementKind::kRead;
      out.mirror = MirrorPlan::kNone;
      return;
    }
    // EXPLAIN ANALYZE runs its statement: what that writes, the secondary must write too.
    // Its answer is the plan, not rows, so it is mirrored as itself.
    Statement explained = classify_nested(body);
    out.kind = explained.kind == StatementKind::kRead ? StatementKind::kWrite : explained.kind;
    out.mirror = explained.mirror == MirrorPlan::kNone ? MirrorPlan::kNone : MirrorPlan::kStatement;
    return;
  }
  if (node == "VariableShowStmt") {
    out.kind = StatementKind::kRead;
    out.mirror = MirrorPlan::kNone;
    return;
  }
  if (is_one_of(kMirroredSessionNodes, node)) {
    out.kind = StatementKind::kSession;
    out.mirror = MirrorPlan::kStatement;
    std::string_view name = string_at(body, "name");
    out.transaction_scoped =
        (body.contains("is_local") && body.at("is_local").is_bool() &&
         body.at("is_local").get_bool()) ||
        (string_at(body, "kind") == "VAR_SET_MULTI" && name.starts_with("TRANSACTION"));
    return;
  }
  if (is_one_of(kPrimaryOnlyNodes, node)) {
    out.kind = StatementKind::kSession;
    out.mirror = MirrorPlan::kNone;
    return;
  }
  if (is_one_of(kDdlNodes, node)) {
    out.kind = StatementKind::kDdl;
    out.mirror = MirrorPlan::kStatement;
    if (node == "CreateTableAsStmt") {
      note_filled_table(body.if_contains("into"), string_at(body, "objtype") == "OBJECT_TABLE",
                        out);
    } else if (node == "AlterTableStmt") {
      note_filled_columns(body, out);
    }
    note_reshaped_table(node, body, out);
    note_private_ddl(node, body, out);
    note_named_relations(node, body, out);
    return;
  }
  out.kind = StatementKind::kUnknown;
  out.mirror = MirrorPlan::kStatement;
}

constexpr size_t kKnownNames = 4096;
// Fingerprints fingerprint() remembers per thread, of texts up to this long: 1 MiB at most.
constexpr size_t kRememberedFingerprints = 256;
constexpr size_t kRememberedFingerprintText = 4096;

bool is_plain_identifier(std::string_view name) {
  if (name.empty() || !(std::islower(static_cast<unsigned char>(name[0])) || name[0] == '_')) {
    return false;
  }
  return std::all_of(name.begin(), name.end(), [](char c) {
    return std::islower(static_cast<unsigned char>(c)) ||
           std::isdigit(static_cast<unsigned char>(c)) || c == '_';
  });
}

// A plain name PostgreSQL reads unquoted as that identifier: not one of its keywords but
// the unreserved ones, which is when its quote_ident leaves a name as it is. Asked of the
// parser, which takes a name for a table and a column (no reserved or type-or-function
// keyword) and for a function (no column-name keyword) only then; remembered per thread,
// as the names a workload writes to are few.
bool reads_unquoted(std::string_view name) {
  if (!is_plain_identifier(name)) return false;
  thread_local std::unordered_map<std::string, bool> known;
  std::string key(name);
  if (auto found = known.find(key); found != known.end()) return found->second;
  std::string probe =
      "CREATE TABLE " + key + " (" + key + " int); CREATE FUNCTION " + key + "() RETURNS int AS ''";
  PgQueryParseResult result = pg_query_parse(probe.c_str());
  bool unquoted = result.error == nullptr;
  pg_query_free_parse_result(result);
  if (known.size() >= kKnownNames) known.clear(); // names from clients' aliases are many
  known.emplace(std::move(key), unquoted);
  return unquoted;
}

} // namespace

std::string quote_identifier(std::string_view name) {
  if (reads_unquoted(name)) return std::string(name);
  std::string quoted = "\"";
  for (char c : name) {
    if (c == '"') quoted += '"';
    quoted += c;
  }
  quoted += '"';
  return quoted;
}

std::string TargetTable::reference() const {
  return quote_identifier(alias.empty() ? name : alias);
}

std::string TargetTable::qualified() const {
  if (schema.empty()) return quote_identifier(name);
  return quote_identifier(schema) + "." + quote_identifier(name);
}

bool Classification::needs_mirror() const {
  return std::any_of(statements.begin(), statements.end(),
                     [](const Statement& s) { return s.mirror != MirrorPlan::kNone; });
}

bool Classification::has_transaction_control() const {
  return std::any_of(statements.begin(), statements.end(),
                     [](const Statement& s) { return s.kind == StatementKind::kTransaction; });
}

namespace {

// libpg_query's parser and JSON writer and Boost.JSON's parser each recurse once per level of
// the parse tree. The most stack any construct took per unit of QueryShape::nesting was 636
// bytes (nested subqueries; chains of operators, casts, UNIONs, NOTs, JOINs, CASEs, function
// calls and arrays took less), 3,164 in an ASan build, whose redzones make frames larger;
// twice that leaves room for what was not measured.
#if defined(__has_feature)
#if __has_feature(address_sanitizer) // clang's way of saying __SANITIZE_ADDRESS__
#define SWITCHYARD_ASAN 1
#endif
#endif
#if defined(__SANITIZE_ADDRESS__) || defined(SWITCHYARD_ASAN)
constexpr size_t kStackPerNesting = 6500;
#else
constexpr size_t kStackPerNesting = 1300;
#endif
// Up to 2 MB of it a statement is parsed on the caller's stack (8 MB for a thread): 1,600
// units, 300 with ASan. Ordinary statements need a few dozen.
constexpr size_t kInlineNesting = (2u << 20) / kStackPerNesting;
// Beyond this nothing is parsed (it would take 130 MB of stack). PostgreSQL refuses far less:
// "stack depth limit exceeded" at a few thousand levels with the default max_stack_depth.
constexpr size_t kMaxNesting = 100'000;

// Runs `work` on a thread of its own with a stack of `bytes` and waits for it; false when the
// thread could not be started. Only reserved: the kernel maps the pages the work touches.
bool run_on_stack(size_t bytes, const std::function<void()>& work) {
  pthread_attr_t attributes;
  if (pthread_attr_init(&attributes) != 0) return false;
  pthread_t thread;
  bool started = pthread_attr_setstacksize(&attributes, bytes) == 0 &&
                 pthread_create(
                     &thread, &attributes,
                     [](void* argument) -> void* {
                       (*static_cast<const std::function<void()>*>(argument))();
                       return nullptr;
                     },
                     const_cast<std::function<void()>*>(&work)) == 0;
  pthread_attr_destroy(&attributes);
  if (started) pthread_join(thread, nullptr);
  return started;
}

// Runs `work` where a parse of text nesting up to `nesting` has the stack it needs; false when
// the text nests too deeply to parse at all, or no thread could be started for it.
bool with_stack_for(size_t nesting, const std::function<void()>& work) {
  if (nesting > kMaxNesting) return false;
  if (nesting <= kInlineNesting) {
    work();
    return true;
  }
  return run_on_stack(nesting * kStackPerNesting + (1u << 20), work);
}

Classification unparsed(std::string_view sql, std::string error) {
  Classification result;
  result.error = std::move(error);
  Statement whole;
  whole.length = sql.size();
  result.statements.push_back(std::move(whole));
  return result;
}

// libpg_query's JSON parse tree of text nesting up to `nesting`, read into `memory` (freed all
// at once, with no destructor recursing down the tree); `ec` set when it cannot be read.
json::value read_parse_tree(const char* tree, size_t nesting, json::monotonic_resource& memory,
                            json::error_code& ec) {
  json::parse_options options;
  options.max_depth = 8 * nesting + 64; // several JSON levels per node, a few per token
  return json::parse(tree, ec, &memory, options);
}

Classification classify_parsed(std::string_view sql, size_t nesting) {
  Classification result;
  std::string text(sql); // libpg_query wants a NUL-terminated string
  PgQueryParseResult parsed = pg_query_parse(text.c_str());
  if (parsed.error != nullptr) {
    result = unparsed(sql, parsed.error->message);
    pg_query_free_parse_result(parsed);
    return result;
  }
  json::error_code ec;
  json::monotonic_resource memory;
  json::value tree = read_parse_tree(parsed.parse_tree, nesting, memory, ec);
  pg_query_free_parse_result(parsed);
  if (ec) return unparsed(sql, "the parse tree could not be read: " + ec.message());

  const json::value* stmts = tree.as_object().if_contains("stmts");
  if (stmts == nullptr || !stmts->is_array()) return result; // empty or comments only
  for (const json::value& raw : stmts->get_array()) {
    const json::object& entry = raw.as_object();
    Statement statement;
    if (const json::value* location = entry.if_contains("stmt_location")) {
      statement.offset = static_cast<size_t>(location->to_number<int64_t>());
    }
    if (const json::value* length = entry.if_contains("stmt_len")) {
      statement.length = static_cast<size_t>(length->to_number<int64_t>());
    }
    // stmt_len 0 means "to the end of the string".
    if (statement.length == 0) statement.length = sql.size() - statement.offset;
    const json::object& stmt = entry.at("stmt").as_object();
    if (!stmt.empty()) {
      const auto& [node, body] = *stmt.begin();
      static const json::object kEmpty;
      classify_node({node.data(), node.size()}, body.is_object() ? body.get_object() : kEmpty,
                    statement);
    }
    result.statements.push_back(std::move(statement));
  }
  return result;
}

// A text longer than this is parsed a statement at a time, and a longer statement whose VALUES
// rows come in a few shapes from one row of each: libpg_query's JSON of a whole text and the
// tree read from it take 100 to 300 times the text's size at once.
constexpr size_t kWholeParseBytes = size_t{64} * 1024;

bool is_identifier_char(char c);

// A VALUES row's shape (query_shape's key) with its parameters' numbers left out: a
// classification records that a value is a parameter, never which, so ($1, $2) and ($3, $4)
// classify alike.
std::string row_shape(std::string_view row) {
  std::string key = query_shape(row).key;
  std::string shape;
  shape.reserve(key.size());
  for (size_t i = 0; i < key.size(); ++i) {
    shape += key[i];
    if (key[i] == '$' && (i == 0 || !is_identifier_char(key[i - 1]))) { // not within a name
      while (i + 1 < key.size() && std::isdigit(static_cast<unsigned char>(key[i + 1])))
        ++i;
    }
  }
  return shape;
}

// A statement whose VALUES list repeats a few shapes of row (a bulk INSERT, its rows differing
// in their constants and parameter numbers alone), classified from the first row of each
// shape: what an INSERT's classification takes from its rows is the same for rows of one
// shape, save PartlyValued::given, which is spread back over every row. nullopt for anything
// else, or when those rows are not shorter than kWholeParseBytes.
std::optional<Classification> classify_distinct_rows(std::string_view statement, size_t nesting) {
  std::vector<StatementSpan> rows = values_rows(statement);
  if (rows.size() < 2) return std::nullopt;
  std::unordered_map<std::string, size_t> shapes; // a row's shape → its place among the kept
  std::vector<size_t> shape_of;                   // per row
  shape_of.reserve(rows.size());
  std::string kept(statement.substr(0, rows.front().offset));
  for (const StatementSpan& row : rows) {
    std::string_view text = statement.substr(row.offset, row.length);
    auto [found, added] = shapes.try_emplace(row_shape(text), shapes.size());
    if (added) {
      if (found->second > 0) kept += ", ";
      kept += text;
      if (kept.size() > kWholeParseBytes) return std::nullopt;
    }
    shape_of.push_back(found->second);
  }
  kept += statement.substr(rows.back().offset + rows.back().length);
  Classification result = classify_parsed(kept, nesting);
  if (!result.error.empty() || result.statements.size() != 1 ||
      result.statements[0].node != "InsertStmt") {
    return std::nullopt;
  }
  Statement& insert = result.statements[0];
  insert.offset = 0;
  insert.length = statement.size();
  for (PartlyValued& column : insert.partly_valued) {
    std::vector<bool> given;
    given.reserve(shape_of.size());
    for (size_t shape : shape_of)
      given.push_back(column.given[shape]);
    column.given = std::move(given);
  }
  return result;
}

// A statement over kWholeParseBytes classified from less of its text, as if parsed whole: its
// lists of constants cut to their first (without_constant_lists), then, if still that long,
// from one VALUES row of each shape. nullopt when neither applies.
std::optional<Classification> classify_long_statement(std::string_view statement, size_t nesting) {
  std::optional<std::string> shortened = without_constant_lists(statement);
  std::string_view text = shortened ? std::string_view(*shortened) : statement;
  std::optional<Classification> result;
  if (text.size() > kWholeParseBytes) result = classify_distinct_rows(text, nesting);
  if (!result && shortened) {
    result = classify_parsed(text, nesting);
    if (!result->error.empty() || result->statements.size() != 1) return std::nullopt;
  }
  if (result) {
    result->statements[0].offset = 0;
    result->statements[0].length = statement.size();
  }
  return result;
}

// Each statement of `sql` at the lexer's `spans` classified on its own, as the parser would have
// in the whole text (a long one from less of its text); nullopt when a span does not parse as
// one statement (an error, or a split the lexer got wrong, such as a semicolon inside
// BEGIN ATOMIC ... END).
std::optional<Classification>
classify_each(std::string_view sql, const std::vector<StatementSpan>& spans, size_t nesting) {
  Classification result;
  result.statements.reserve(spans.size());
  for (const StatementSpan& span : spans) {
    std::string_view text = sql.substr(span.offset, span.length);
    std::optional<Classification> shortened;
    if (text.size() > kWholeParseBytes) shortened = classify_long_statement(text, nesting);
    Classification one = shortened ? std::move(*shortened) : classify_parsed(text, nesting);
    if (!one.error.empty() || one.statements.size() != 1) return std::nullopt;
    Statement& statement = one.statements.front();
    statement.offset += span.offset;
    result.statements.push_back(std::move(statement));
  }
  return result;
}

// classify() of a text already lexed into `shape`.
Classification classify_bounded(std::string_view sql, const QueryShape& shape) {
  Classification result;
  bool parsed = with_stack_for(shape.nesting, [&] {
    try {
      std::optional<Classification> each;
      if (sql.size() > kWholeParseBytes && shape.ok && !shape.spans.empty()) {
        each = classify_each(sql, shape.spans, shape.nesting);
      }
      result = each ? std::move(*each) : classify_parsed(sql, shape.nesting);
    } catch (const std::exception& e) { // a parse tree not shaped as expected
      result = unparsed(sql, std::string("the parse tree could not be read: ") + e.what());
    }
  });
  if (!parsed) {
    result = unparsed(sql, "the statement nests too deeply for switchyard to classify (" +
                               std::to_string(shape.nesting) + " tokens deep, at most " +
                               std::to_string(kMaxNesting) + ")");
  }
  return result;
}

} // namespace

Classification classify(std::string_view sql) {
  return classify_bounded(sql, query_shape(sql));
}

std::string with_row_image(std::string_view statement_text, const Statement& statement,
                           Dialect dialect) {
  std::string text(statement_text);
  // A newline first, so a trailing "-- comment" cannot swallow the clause.
  text += statement.has_returning ? "\n, " : "\nRETURNING ";
  text += "NULL AS ";
  text += kImageMarker;
  text += ", ";
  if (dialect == Dialect::kPostgres) {
    text += statement.target.reference();
    text += '.';
  }
  text += '*';
  return text;
}

std::string fingerprint(std::string_view sql) {
  // Each journal entry asks for its statement's: remembered per thread for statements of
  // ordinary length, as a workload's are few (a parse each was a few percent of the proxy's
  // CPU while the secondary was down).
  thread_local std::unordered_map<std::string, std::string> known;
  std::string text(sql);
  bool remembered = text.size() <= kRememberedFingerprintText;
  if (remembered) {
    if (auto found = known.find(text); found != known.end()) return found->second;
  }
  std::string out;
  with_stack_for(query_shape(sql).nesting, [&] {
    PgQueryFingerprintResult result = pg_query_fingerprint(text.c_str());
    if (result.error == nullptr && result.fingerprint_str != nullptr) out = result.fingerprint_str;
    pg_query_free_fingerprint_result(result);
  });
  if (remembered) {
    if (known.size() >= kRememberedFingerprints) known.clear();
    known.emplace(std::move(text), out);
  }
  return out;
}

namespace {

// The source of a SELECT (a SelectStmt's body) as view_source describes it.
std::optional<ViewSource> select_source(const json::object& select) {
  for (std::string_view clause : {"distinctClause", "groupClause", "windowClause"}) {
    if (has_items(select, clause)) return std::nullopt;
  }
  for (std::string_view clause :
       {"havingClause", "limitCount", "limitOffset", "withClause", "larg", "valuesLists"}) {
    if (select.contains(clause)) return std::nullopt;
  }
  const json::value* from = select.if_contains("fromClause");
  if (from == nullptr || !from->is_array() || from->get_array().size() != 1) return std::nullopt;
  const json::object* relation = member_object(from->get_array().front(), "RangeVar");
  const json::value* targets = select.if_contains("targetList");
  if (relation == nullptr || targets == nullptr || !targets->is_array()) return std::nullopt;
  ViewSource source;
  source.relation = table_named(*relation);
  for (const json::value& item : targets->get_array()) {
    const json::object* target = member_object(item, "ResTarget");
    if (target == nullptr) return std::nullopt;
    ViewSource::Column column;
    const json::value* val = target->if_contains("val");
    const json::object* ref = val != nullptr ? member_object(*val, "ColumnRef") : nullptr;
    const json::value* fields = ref != nullptr ? ref->if_contains("fields") : nullptr;
    if (fields != nullptr && fields->is_array()) column.shows = last_name(fields->get_array());
    column.name = string_at(*target, "name");
    if (column.name.empty()) column.name = column.shows;
    if (column.name.empty()) return std::nullopt; // "*" or an unnamed expression
    source.columns.push_back(std::move(column));
  }
  return source;
}

// Parses `sql` and, when it is one SELECT, calls `use` with its SelectStmt node.
template <typename Use> void with_one_select(std::string_view sql, Use use) {
  std::string text(sql);
  size_t nesting = query_shape(sql).nesting;
  with_stack_for(nesting, [&] {
    PgQueryParseResult parsed = pg_query_parse(text.c_str());
    if (parsed.error == nullptr) {
      json::error_code ec;
      json::monotonic_resource memory;
      json::value tree = read_parse_tree(parsed.parse_tree, nesting, memory, ec);
      const json::value* stmts = ec ? nullptr : tree.as_object().if_contains("stmts");
      if (stmts != nullptr && stmts->is_array() && stmts->get_array().size() == 1) {
        const json::value& entry = stmts->get_array().front();
        const json::value* stmt =
            entry.is_object() ? entry.get_object().if_contains("stmt") : nullptr;
        const json::object* select = stmt != nullptr ? member_object(*stmt, "SelectStmt") : nullptr;
        if (select != nullptr) use(*select);
      }
    }
    pg_query_free_parse_result(parsed);
  });
}

} // namespace

std::optional<ViewSource> view_source(std::string_view definition) {
  std::optional<ViewSource> source;
  with_one_select(definition, [&](const json::object& select) { source = select_source(select); });
  return source;
}

namespace {

// function_call_statement of the plainest calls of large-object functions, `SELECT
// pg_catalog.lowrite(0, '\x...')` as pg_dump writes them, read without the parser: its cost
// (a parse tree and its JSON) is many times a scan's for the long literal of each piece of
// an object. nullopt for anything else (comments, quoted names, casts, E'' strings, a
// literal continued on the next line, other functions), left to the parser.
std::optional<FunctionCallStatement> plain_large_object_call(std::string_view text) {
  size_t at = 0;
  auto skip_space = [&] {
    while (at < text.size() && std::isspace(static_cast<unsigned char>(text[at])))
      ++at;
  };
  auto word = [&] {
    size_t start = at;
    while (at < text.size() &&
           (std::isalnum(static_cast<unsigned char>(text[at])) || text[at] == '_')) {
      ++at;
    }
    std::string lowered(text.substr(start, at - start));
    for (char& c : lowered)
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    return lowered;
  };
  auto take = [&](char c) {
    skip_space();
    if (at >= text.size() || text[at] != c) return false;
    ++at;
    return true;
  };
  skip_space();
  if (word() != "select" || at >= text.size() ||
      !std::isspace(static_cast<unsigned char>(text[at])))
    return std::nullopt;
  skip_space();
  FunctionCallStatement call;
  call.name = word();
  if (call.name == "pg_catalog" && take('.')) {
    skip_space();
    call.name = word();
  }
  if (call.name.empty() || std::isdigit(static_cast<unsigned char>(call.name[0])) || !take('('))
    return std::nullopt;
  bool first = true;
  while (!take(')')) {
    if (!first && !take(',')) return std::nullopt;
    first = false;
    skip_space();
    FunctionCallStatement::Argument argument;
    if (at < text.size() && text[at] == '\'') {
      std::string literal;
      while (true) {
        size_t close = text.find('\'', at + 1);
        if (close == std::string_view::npos) return std::nullopt;
        literal.append(text.substr(at + 1, close - at - 1));
        at = close + 1;
        if (at >= text.size() || text[at] != '\'') break;
        literal += '\''; // '' inside: one quote
      }
      argument.literal = std::move(literal);
    } else if (at < text.size() && text[at] == '$') {
      ++at;
      std::string digits = word();
      size_t number = 0;
      auto [end, error] = std::from_chars(digits.data(), digits.data() + digits.size(), number);
      if (error != std::errc() || end != digits.data() + digits.size() || number == 0)
        return std::nullopt;
      argument.parameter = number;
    } else {
      bool negative = at < text.size() && text[at] == '-';
      if (negative) ++at;
      std::string token = word();
      if (token.empty()) return std::nullopt;
      if (token == "null" && !negative) {
        argument.literal.reset();
      } else if (std::all_of(token.begin(), token.end(),
                             [](char c) { return std::isdigit(static_cast<unsigned char>(c)); })) {
        argument.literal = negative ? "-" + token : token;
      } else {
        return std::nullopt;
      }
    }
    call.arguments.push_back(std::move(argument));
  }
  skip_space();
  if (at < text.size() && text[at] == ';') ++at;
  skip_space();
  if (at != text.size() || !large_object_function_oid(call.name, call.arguments.size()))
    return std::nullopt;
  return call;
}

} // namespace

std::optional<FunctionCallStatement> function_call_statement(std::string_view statement) {
  if (auto plain = plain_large_object_call(statement)) return plain;
  std::optional<FunctionCallStatement> found;
  with_one_select(statement, [&](const json::object& select) {
    const json::object* call = sole_call(select);
    if (call == nullptr) return;
    FunctionCallStatement shape;
    shape.name = std::string(builtin_name(call->at("funcname").get_array()));
    if (const json::value* args = call->if_contains("args")) {
      for (const json::value& arg : args->get_array()) {
        const json::value* node = without_casts(&arg); // sole_call checked what is inside
        FunctionCallStatement::Argument argument;
        if (const json::object* param = member_object(*node, "ParamRef")) {
          const json::value* number = param->if_contains("number");
          if (number == nullptr || !number->is_int64() || number->get_int64() < 1) return;
          argument.parameter = static_cast<size_t>(number->get_int64());
        } else if (!literal_text(*member_object(*node, "A_Const"), statement, argument.literal)) {
          return;
        }
        shape.arguments.push_back(std::move(argument));
      }
    }
    found = std::move(shape);
  });
  return found;
}

bool constant_expression(std::string_view expression) {
  bool constant = false;
  with_one_select("SELECT " + std::string(expression), [&](const json::object& select) {
    const json::value* targets = select.if_contains("targetList");
    if (targets == nullptr || !targets->is_array() || targets->get_array().size() != 1 ||
        select.contains("fromClause")) {
      return;
    }
    const json::object* target = member_object(targets->get_array().front(), "ResTarget");
    constant = target != nullptr && is_constant(target->if_contains("val"));
  });
  return constant;
}

namespace {

bool is_identifier_char(char c) {
  return std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '$' ||
         static_cast<unsigned char>(c) >= 0x80;
}

// The length of the dollar-quote opening tag ("$$", "$tag$") at `pos`, or 0.
size_t dollar_tag_length(std::string_view sql, size_t pos) {
  size_t end = pos + 1;
  if (end < sql.size() && std::isdigit(static_cast<unsigned char>(sql[end]))) return 0; // $1
  while (end < sql.size() && sql[end] != '$') {
    char c = sql[end];
    if (!(std::isalnum(static_cast<unsigned char>(c)) || c == '_' ||
          static_cast<unsigned char>(c) >= 0x80)) {
      return 0;
    }
    ++end;
  }
  return end < sql.size() ? end - pos + 1 : 0;
}

// Where the block comment opening at `pos` ends, just past its "*/"; npos if it does not.
size_t block_comment_end(std::string_view sql, size_t pos) {
  size_t depth = 1; // PostgreSQL block comments nest
  size_t j = pos + 2;
  while (j < sql.size()) {
    if (sql.compare(j, 2, "/*") == 0) {
      ++depth;
      j += 2;
    } else if (sql.compare(j, 2, "*/") == 0) {
      j += 2;
      if (--depth == 0) return j;
    } else {
      ++j;
    }
  }
  return std::string_view::npos;
}

// QueryShape::nesting, counted as the lexer goes.
class NestingBound {
public:
  void token() { ++levels_.back().segment; }
  void open() {
    token();
    levels_.emplace_back();
  }
  void close() {
    if (levels_.size() == 1) return token(); // unbalanced: the parser refuses it
    size_t bound = levels_.back().bound();
    levels_.pop_back();
    levels_.back().inner = std::max(levels_.back().inner, bound);
  }
  void separator() {
    Level& level = levels_.back();
    level.finished = std::max(level.finished, level.segment + level.inner);
    level.segment = level.inner = 0;
  }
  void set_operation() {
    token();
    ++levels_.back().set_operations;
  }
  size_t finish() {
    while (levels_.size() > 1)
      close();
    return levels_.back().bound();
  }

private:
  struct Level {
    size_t segment = 0;  // tokens since the last comma or semicolon, brackets counting one
    size_t inner = 0;    // the deepest bracketed part of this segment
    size_t finished = 0; // the deepest segment before it
    size_t set_operations = 0;
    size_t bound() const { return std::max(finished, segment + inner) + set_operations; }
  };
  std::vector<Level> levels_{1};
};

// Whether `word` is `keyword` (lower case), in any case.
bool is_keyword(std::string_view word, std::string_view keyword) {
  return word.size() == keyword.size() &&
         std::equal(word.begin(), word.end(), keyword.begin(), [](char a, char b) {
           return std::tolower(static_cast<unsigned char>(a)) == b;
         });
}

bool is_set_operation(std::string_view word) {
  return is_keyword(word, "union") || is_keyword(word, "intersect") || is_keyword(word, "except");
}

// Where the statement of `prepare` (PREPARE name [(types)] AS statement) starts: after its
// first AS outside parentheses, quotes and comments.
std::optional<size_t> prepared_statement_offset(std::string_view prepare) {
  size_t depth = 0;
  size_t i = 0;
  while (i < prepare.size()) {
    char c = prepare[i];
    if (prepare.compare(i, 2, "--") == 0) {
      i = prepare.find('\n', i);
      if (i == std::string_view::npos) return std::nullopt;
    } else if (prepare.compare(i, 2, "/*") == 0) {
      i = block_comment_end(prepare, i);
      if (i == std::string_view::npos) return std::nullopt;
    } else if (c == '"') {
      size_t close = prepare.find('"', i + 1);
      while (close != std::string_view::npos && prepare.compare(close, 2, "\"\"") == 0) {
        close = prepare.find('"', close + 2);
      }
      if (close == std::string_view::npos) return std::nullopt;
      i = close + 1;
    } else if (is_identifier_char(c)) {
      size_t end = i;
      while (end < prepare.size() && is_identifier_char(prepare[end]))
        ++end;
      std::string_view word = prepare.substr(i, end - i);
      if (depth == 0 && word.size() == 2 &&
          std::tolower(static_cast<unsigned char>(word[0])) == 'a' &&
          std::tolower(static_cast<unsigned char>(word[1])) == 's') {
        return end;
      }
      i = end;
    } else {
      if (c == '(') ++depth;
      if (c == ')' && depth > 0) --depth;
      ++i;
    }
  }
  return std::nullopt;
}

// Where the string constant opening at `pos` ends, just past its quote; npos if it does not.
// E'...' takes backslash escapes (standard_conforming_strings otherwise).
size_t string_constant_end(std::string_view sql, size_t pos) {
  bool escapes = pos > 0 && (sql[pos - 1] == 'E' || sql[pos - 1] == 'e') &&
                 (pos < 2 || !is_identifier_char(sql[pos - 2]));
  size_t j = pos + 1;
  while (j < sql.size()) {
    bool escaped = escapes && sql[j] == '\\';
    bool doubled = sql[j] == '\'' && j + 1 < sql.size() && sql[j + 1] == '\'';
    if (escaped || doubled) {
      j += 2;
    } else if (sql[j] == '\'') {
      return j + 1;
    } else {
      ++j;
    }
  }
  return std::string_view::npos;
}

// Where the quoted identifier opening at `pos` ends, just past its quote; npos if it does not.
size_t quoted_identifier_end(std::string_view sql, size_t pos) {
  size_t j = pos + 1;
  while (j < sql.size() && !(sql[j] == '"' && (j + 1 >= sql.size() || sql[j + 1] != '"'))) {
    j += sql[j] == '"' ? 2 : 1;
  }
  return j < sql.size() ? j + 1 : std::string_view::npos;
}

// Where the comment, string constant, quoted identifier or dollar-quoted string at `pos` ends
// (npos if it does not); `pos` itself when none starts there.
size_t opaque_end(std::string_view sql, size_t pos) {
  char c = sql[pos];
  char next = pos + 1 < sql.size() ? sql[pos + 1] : ' ';
  if (c == '-' && next == '-') {
    size_t end = sql.find('\n', pos);
    return end == std::string_view::npos ? sql.size() : end;
  }
  if (c == '/' && next == '*') return block_comment_end(sql, pos);
  if (c == '\'') return string_constant_end(sql, pos);
  if (c == '"') return quoted_identifier_end(sql, pos);
  if (c == '$' && (pos == 0 || !is_identifier_char(sql[pos - 1]))) {
    if (size_t tag = dollar_tag_length(sql, pos); tag > 0) {
      size_t end = sql.find(sql.substr(pos, tag), pos + tag);
      return end == std::string_view::npos ? end : end + tag;
    }
  }
  return pos;
}

// Where the constant at `pos` ends: a number, a string constant (E'...' too) or a parameter
// ($n), possibly signed; npos when none starts there.
size_t constant_end(std::string_view sql, size_t pos) {
  auto digit = [&](size_t i) {
    return i < sql.size() && std::isdigit(static_cast<unsigned char>(sql[i]));
  };
  if (pos < sql.size() && (sql[pos] == '-' || sql[pos] == '+')) ++pos;
  if (pos >= sql.size()) return std::string_view::npos;
  if (sql[pos] == '\'') return string_constant_end(sql, pos);
  if ((sql[pos] == 'E' || sql[pos] == 'e') && pos + 1 < sql.size() && sql[pos + 1] == '\'') {
    return string_constant_end(sql, pos + 1);
  }
  size_t end = pos;
  if (sql[pos] == '$') {
    while (digit(end + 1))
      ++end;
    if (end == pos) return std::string_view::npos;
    ++end;
  } else if (digit(pos) || (sql[pos] == '.' && digit(pos + 1))) {
    while (digit(end) || (end < sql.size() && sql[end] == '.'))
      ++end;
    if (end < sql.size() && (sql[end] == 'e' || sql[end] == 'E')) {
      size_t exponent = end + 1;
      if (exponent < sql.size() && (sql[exponent] == '+' || sql[exponent] == '-')) ++exponent;
      if (!digit(exponent)) return std::string_view::npos;
      end = exponent;
      while (digit(end))
        ++end;
    }
  } else {
    return std::string_view::npos;
  }
  // 1abc or $1abc is not a constant.
  return end < sql.size() && is_identifier_char(sql[end]) ? std::string_view::npos : end;
}

// The list of constants that opens at `open` (`(` or `[`): where its first constant ends and
// where its closing bracket is. nullopt unless it holds two or more constants and nothing
// else (whitespace between them).
std::optional<std::pair<size_t, size_t>> constant_list(std::string_view sql, size_t open) {
  char close = sql[open] == '(' ? ')' : ']';
  auto skip_space = [&](size_t i) {
    while (i < sql.size() && std::isspace(static_cast<unsigned char>(sql[i])))
      ++i;
    return i;
  };
  size_t first_end = 0;
  size_t items = 0;
  for (size_t i = skip_space(open + 1);; i = skip_space(i + 1)) {
    size_t end = constant_end(sql, i);
    if (end == std::string_view::npos) return std::nullopt;
    if (++items == 1) first_end = end;
    i = skip_space(end);
    if (i >= sql.size()) return std::nullopt;
    if (sql[i] == close) {
      if (items < 2) return std::nullopt;
      return std::make_pair(first_end, i);
    }
    if (sql[i] != ',') return std::nullopt;
  }
}

} // namespace

std::optional<std::string> without_constant_lists(std::string_view statement) {
  std::string shortened;
  size_t copied = 0; // statement[0, copied) is in `shortened`
  std::string_view previous_word;
  size_t i = 0;
  while (i < statement.size()) {
    char c = statement[i];
    size_t end = opaque_end(statement, i);
    if (end == std::string_view::npos) return std::nullopt;
    if (end != i) {
      if (c != '-' && c != '/') previous_word = {}; // a constant or quoted name, not a comment
      i = end;
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (is_identifier_char(c)) {
      size_t word_end = i;
      while (word_end < statement.size() && is_identifier_char(statement[word_end]))
        ++word_end;
      previous_word = statement.substr(i, word_end - i);
      i = word_end;
      continue;
    }
    if ((c == '(' && is_keyword(previous_word, "in")) ||
        (c == '[' && is_keyword(previous_word, "array"))) {
      if (auto list = constant_list(statement, i)) {
        shortened += statement.substr(copied, list->first - copied);
        copied = list->second;
        i = list->second;
      }
    }
    previous_word = {};
    ++i;
  }
  if (copied == 0) return std::nullopt;
  shortened += statement.substr(copied);
  return shortened;
}

std::vector<StatementSpan> values_rows(std::string_view statement) {
  std::vector<StatementSpan> rows;
  size_t depth = 0;
  size_t row_start = 0;
  bool in_list = false;    // past the VALUES keyword
  bool expect_row = false; // in the list, where a row's bracket must come
  size_t i = 0;
  while (i < statement.size()) {
    char c = statement[i];
    size_t end = opaque_end(statement, i);
    if (end == std::string_view::npos) return {};
    bool comment = c == '-' || c == '/';
    if (end != i && !(in_list && depth == 0 && !comment)) {
      i = end;
      continue;
    }
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
      continue;
    }
    if (in_list && depth == 0) {
      if (!expect_row) {
        if (c != ',') return rows; // the list ends: ON CONFLICT, RETURNING ...
        expect_row = true;
      } else if (c == '(') {
        row_start = i;
        expect_row = false;
        depth = 1;
      } else {
        return {};
      }
      ++i;
    } else if (c == '(' || c == '[') {
      ++depth;
      ++i;
    } else if (c == ')' || c == ']') {
      if (depth == 0) return {};
      if (--depth == 0 && in_list) rows.push_back(StatementSpan{row_start, i + 1 - row_start});
      ++i;
    } else if (is_identifier_char(c)) {
      size_t word_end = i;
      while (word_end < statement.size() && is_identifier_char(statement[word_end]))
        ++word_end;
      if (depth == 0 && !in_list && is_keyword(statement.substr(i, word_end - i), "values")) {
        in_list = expect_row = true;
      }
      i = word_end;
    } else {
      ++i;
    }
  }
  return in_list && !expect_row && depth == 0 ? rows : std::vector<StatementSpan>{};
}

std::optional<std::string> prepare_with_row_image(std::string_view statement_text,
                                                  const Statement& statement, Dialect dialect) {
  if (!statement.prepared_write) return std::nullopt;
  auto offset = prepared_statement_offset(statement_text);
  if (!offset) return std::nullopt;
  return std::string(statement_text.substr(0, *offset)) +
         with_row_image(statement_text.substr(*offset), statement.prepared_write->statements[0],
                        dialect);
}

std::optional<std::string> prepare_renamed(std::string_view prepare, std::string_view name) {
  // The start of the next token at or after `i`, past whitespace and comments.
  auto next_token = [&](size_t i) -> std::optional<size_t> {
    while (i < prepare.size()) {
      if (std::isspace(static_cast<unsigned char>(prepare[i]))) {
        ++i;
      } else if (prepare.compare(i, 2, "--") == 0) {
        i = prepare.find('\n', i);
      } else if (prepare.compare(i, 2, "/*") == 0) {
        i = block_comment_end(prepare, i);
      } else {
        return i;
      }
    }
    return std::nullopt;
  };
  auto word_end = [&](size_t i) {
    while (i < prepare.size() && is_identifier_char(prepare[i]))
      ++i;
    return i;
  };
  auto keyword = next_token(0);
  if (!keyword) return std::nullopt;
  size_t keyword_end = word_end(*keyword);
  std::string_view word = prepare.substr(*keyword, keyword_end - *keyword);
  if (word.size() != 7 || !std::equal(word.begin(), word.end(), "prepare", [](char a, char b) {
        return std::tolower(static_cast<unsigned char>(a)) == b;
      })) {
    return std::nullopt;
  }
  auto start = next_token(keyword_end);
  if (!start) return std::nullopt;
  size_t end = 0;
  if (prepare[*start] == '"') {
    size_t close = prepare.find('"', *start + 1);
    while (close != std::string_view::npos && prepare.compare(close, 2, "\"\"") == 0) {
      close = prepare.find('"', close + 2);
    }
    if (close == std::string_view::npos) return std::nullopt;
    end = close + 1;
  } else {
    end = word_end(*start);
    if (end == *start) return std::nullopt;
  }
  return std::string(prepare.substr(0, *start)) + std::string(name) +
         std::string(prepare.substr(end));
}

QueryShape query_shape(std::string_view sql, size_t max_statements) {
  QueryShape shape;
  NestingBound nesting;
  size_t literal_end = 0; // a word right behind a literal is a token of its own
  shape.key.reserve(sql.size());
  size_t start = 0;    // of the current statement
  bool tokens = false; // the current statement has more than whitespace and comments
  auto close_statement = [&](size_t end) {
    if (tokens) shape.spans.push_back(StatementSpan{start, end - start});
    start = end + 1;
    tokens = false;
  };
  size_t i = 0;
  while (i < sql.size() && shape.spans.size() <= max_statements) {
    char c = sql[i];
    char previous = i > 0 ? sql[i - 1] : ' ';
    if (c == '-' && i + 1 < sql.size() && sql[i + 1] == '-') {
      size_t end = sql.find('\n', i);
      end = end == std::string_view::npos ? sql.size() : end;
      shape.key.append(sql.substr(i, end - i));
      i = end;
    } else if (c == '/' && i + 1 < sql.size() && sql[i + 1] == '*') {
      size_t j = block_comment_end(sql, i);
      if (j == std::string_view::npos) {
        shape.ok = false;
        j = sql.size();
      }
      shape.key.append(sql.substr(i, j - i));
      i = j;
    } else if (c == '\'') {
      // The E of E'...' is already in the key as an identifier char.
      size_t j = string_constant_end(sql, i);
      if (j == std::string_view::npos) {
        shape.ok = false;
        j = sql.size();
      }
      shape.key += '?';
      tokens = true;
      nesting.token();
      i = literal_end = j;
    } else if (c == '"') {
      size_t j = quoted_identifier_end(sql, i);
      if (j == std::string_view::npos) {
        shape.ok = false;
        j = sql.size();
      }
      shape.key.append(sql.substr(i, j - i));
      tokens = true;
      nesting.token();
      i = literal_end = j;
    } else if (c == '$' && !is_identifier_char(previous) && dollar_tag_length(sql, i) > 0) {
      size_t tag = dollar_tag_length(sql, i);
      size_t end = sql.find(sql.substr(i, tag), i + tag);
      if (end == std::string_view::npos) {
        shape.ok = false;
        end = sql.size();
      } else {
        end += tag;
      }
      shape.key += '?';
      tokens = true;
      nesting.token();
      i = literal_end = end;
    } else if ((std::isdigit(static_cast<unsigned char>(c)) ||
                (c == '.' && i + 1 < sql.size() &&
                 std::isdigit(static_cast<unsigned char>(sql[i + 1])))) &&
               !is_identifier_char(previous)) {
      size_t j = i;
      while (j < sql.size() && (std::isdigit(static_cast<unsigned char>(sql[j])) || sql[j] == '.'))
        ++j;
      if (j < sql.size() && (sql[j] == 'e' || sql[j] == 'E')) {
        size_t k = j + 1;
        if (k < sql.size() && (sql[k] == '+' || sql[k] == '-')) ++k;
        if (k < sql.size() && std::isdigit(static_cast<unsigned char>(sql[k]))) {
          j = k;
          while (j < sql.size() && std::isdigit(static_cast<unsigned char>(sql[j])))
            ++j;
        }
      }
      shape.key += '?';
      tokens = true;
      nesting.token();
      i = literal_end = j;
    } else if (c == ';') {
      shape.key += ';';
      close_statement(i);
      nesting.separator();
      ++i;
    } else {
      if (!std::isspace(static_cast<unsigned char>(c))) tokens = true;
      shape.key += c;
      if (c == '(' || c == '[') {
        nesting.open();
      } else if (c == ')' || c == ']') {
        nesting.close();
      } else if (c == ',') {
        nesting.separator();
      } else if (!is_identifier_char(c)) {
        if (!std::isspace(static_cast<unsigned char>(c))) nesting.token(); // each operator char
      } else if (!is_identifier_char(previous) || i == literal_end) {
        size_t end = i;
        while (end < sql.size() && is_identifier_char(sql[end]))
          ++end;
        if (is_set_operation(sql.substr(i, end - i))) {
          nesting.set_operation();
        } else {
          nesting.token();
        }
      }
      ++i;
    }
  }
  if (shape.spans.size() <= max_statements) close_statement(sql.size());
  shape.nesting = nesting.finish();
  return shape;
}

ClassifiedQuery ClassificationCache::get(std::string_view sql, size_t max_statements) {
  QueryShape shape = query_shape(sql, max_statements);
  if (shape.spans.size() > max_statements) {
    ++misses_;
    Classification refused =
        unparsed(sql, "the text holds more than " + std::to_string(max_statements) + " statements");
    refused.too_many_statements = true;
    return ClassifiedQuery{std::make_shared<const Classification>(std::move(refused)),
                           {StatementSpan{0, sql.size()}}};
  }
  if (shape.ok) {
    if (auto found = index_.find(shape.key); found != index_.end()) {
      ++hits_;
      entries_.splice(entries_.begin(), entries_, found->second);
      return ClassifiedQuery{found->second->classification, std::move(shape.spans)};
    }
  }
  ++misses_;
  auto classification = std::make_shared<const Classification>(classify_bounded(sql, shape));
  std::vector<StatementSpan> spans;
  for (const Statement& statement : classification->statements) {
    spans.push_back(StatementSpan{statement.offset, statement.length});
  }
  // Cache only what the lexer splits exactly as the parser did, so a hit's spans are right,
  // and nothing naming a prepared transaction: that name is a literal.
  bool names_prepared_transaction =
      std::any_of(classification->statements.begin(), classification->statements.end(),
                  [](const Statement& s) { return !s.prepared_transaction.empty(); });
  size_t bytes = shape.key.size() + classification->statements.size() * sizeof(Statement);
  if (shape.ok && classification->error.empty() && spans == shape.spans &&
      !names_prepared_transaction && bytes <= byte_budget_ / 16) {
    entries_.push_front(Entry{std::move(shape.key), classification, bytes});
    index_.emplace(entries_.front().key, entries_.begin());
    bytes_ += bytes;
    while (entries_.size() > capacity_ || bytes_ > byte_budget_)
      evict_oldest();
  }
  return ClassifiedQuery{std::move(classification), std::move(spans)};
}

void ClassificationCache::evict_oldest() {
  bytes_ -= entries_.back().bytes;
  index_.erase(entries_.back().key);
  entries_.pop_back();
}

} // namespace switchyard::protocol
