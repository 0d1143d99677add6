#pragma once

#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "proxy/sqlite_engine.hpp"

namespace switchyard::proxy {

//! A session's run-time parameters as the SQLite engine keeps them: PostgreSQL's names and
//! defaults, SET/RESET scoped to transactions as PostgreSQL scopes them, and the
//! ParameterStatus messages owed to the client.
class SessionSettings {
public:
  explicit SessionSettings(std::string_view user);

  std::string get(std::string_view name) const;
  //! SET name TO value (or DEFAULT). Inside a transaction the old value is kept, so
  //! end_transaction can undo it. Unknown names (without a dot), fixed parameters and values
  //! the engine cannot honour (client_encoding other than UTF8, ...) are errors.
  SqlStatus set(std::string_view name, std::string_view value, bool local, bool to_default,
                bool in_transaction);
  //! RESET ALL.
  void reset_all(bool in_transaction);
  //! Undoes SET LOCAL, and every SET of the transaction when it did not commit.
  void end_transaction(bool committed);

  //! Appends a ParameterStatus for every reported parameter (the greeting).
  void append_all_reported(std::string& out);
  //! Appends a ParameterStatus for each reported parameter changed since the last call.
  void append_changes(std::string& out);

  //! The result of SHOW `name` ("all" for SHOW ALL): its column names and rows.
  struct Shown {
    std::vector<std::string> columns;
    std::vector<std::vector<std::string>> rows;
  };
  Result<Shown> show(std::string_view name) const;

private:
  void changed(std::string_view name);

  std::map<std::string, std::string> values_;       // by lower-case name
  std::map<std::string, std::string> before_block_; // values before this block's SETs
  std::map<std::string, std::string> before_local_; // values before this block's SET LOCALs
  std::vector<std::string> owed_;                   // ParameterStatus owed to the client
};

} // namespace switchyard::proxy
