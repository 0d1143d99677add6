#include "proxy/sqlite_settings.hpp"

#include <algorithm>
#include <cctype>

#include "protocol/messages.hpp"

namespace switchyard::proxy {
namespace {

struct SettingInfo {
  std::string_view name; // as PostgreSQL spells it in ParameterStatus and SHOW ALL
  std::string_view default_value;
  bool reported; // GUC_REPORT: sent as ParameterStatus when it changes
  bool fixed;    // cannot be changed
};

constexpr SettingInfo kSettings[] = {
    {"application_name", "", true, false},
    {"bytea_output", "hex", false, false},
    {"client_encoding", "UTF8", true, false},
    {"client_min_messages", "notice", false, false},
    {"DateStyle", "ISO, MDY", true, false},
    {"default_transaction_isolation", "serializable", false, false},
    {"default_transaction_read_only", "off", true, false},
    {"extra_float_digits", "1", false, false},
    {"idle_in_transaction_session_timeout", "0", false, false},
    {"in_hot_standby", "off", true, true},
    {"integer_datetimes", "on", true, true},
    {"IntervalStyle", "postgres", true, false},
    {"is_superuser", "on", true, true},
    {"lock_timeout", "0", false, false},
    {"max_identifier_length", "63", false, true},
    {"search_path", "\"$user\", public", false, false},
    {"server_encoding", "UTF8", true, true},
    {"server_version", "15.0", true, true},
    {"server_version_num", "150000", false, true},
    {"session_authorization", "", true, true},
    {"standard_conforming_strings", "on", true, false},
    {"statement_timeout", "0", false, false},
    {"synchronous_commit", "on", false, false},
    {"TimeZone", "UTC", true, false},
    {"transaction_isolation", "serializable", false, true},
    {"transaction_read_only", "off", false, true},
};

std::string lower(std::string_view text) {
  std::string out(text);
  for (char& c : out)
    c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return out;
}

const SettingInfo* find_setting(std::string_view name) {
  std::string key = lower(name);
  for (const SettingInfo& setting : kSettings) {
    if (lower(setting.name) == key) return &setting;
  }
  return nullptr;
}

// The value to store for `setting`, or why it is refused.
Result<std::string> check_value(const SettingInfo& setting, std::string_view value) {
  std::string v = lower(value);
  if (setting.name == "client_encoding") {
    if (v == "utf8" || v == "utf-8" || v == "unicode") return std::string("UTF8");
    if (v == "sql_ascii") return std::string("SQL_ASCII");
    return Error{"switchyard's SQLite engine supports only client_encoding UTF8 (got " +
                 std::string(value) + ")"};
  }
  if (setting.name == "standard_conforming_strings" && v != "on" && v != "true") {
    return Error{"switchyard's SQLite engine needs standard_conforming_strings on"};
  }
  if (setting.name == "bytea_output" && v != "hex") {
    return Error{"switchyard's SQLite engine supports only bytea_output hex"};
  }
  return std::string(value);
}

SqlError error(std::string_view sqlstate, std::string message) {
  return SqlError{std::string(sqlstate), std::move(message), {}};
}

} // namespace

SessionSettings::SessionSettings(std::string_view user) {
  values_["session_authorization"] = std::string(user);
}

std::string SessionSettings::get(std::string_view name) const {
  if (auto found = values_.find(lower(name)); found != values_.end()) return found->second;
  if (const SettingInfo* setting = find_setting(name)) return std::string(setting->default_value);
  return {};
}

SqlStatus SessionSettings::set(std::string_view name, std::string_view value, bool local,
                               bool to_default, bool in_transaction) {
  const SettingInfo* setting = find_setting(name);
  if (setting == nullptr && name.find('.') == std::string_view::npos) {
    return error("42704", "unrecognized configuration parameter \"" + std::string(name) + "\"");
  }
  if (setting && setting->fixed) {
    return error("55P02", "parameter \"" + std::string(name) + "\" cannot be changed");
  }
  std::string stored(to_default && setting ? setting->default_value : value);
  if (setting && !to_default) {
    auto checked = check_value(*setting, value);
    if (!checked) return error("22023", checked.error());
    stored = std::move(*checked);
  }
  std::string key = lower(name);
  if (in_transaction) {
    auto& saved = local ? before_local_ : before_block_;
    if (!saved.contains(key)) saved.emplace(key, get(key));
  }
  if (get(key) != stored) changed(key);
  values_[key] = std::move(stored);
  return std::nullopt;
}

void SessionSettings::reset_all(bool in_transaction) {
  for (const SettingInfo& setting : kSettings) {
    if (!setting.fixed) (void)set(setting.name, {}, false, true, in_transaction);
  }
}

void SessionSettings::end_transaction(bool committed) {
  auto restore = [this](const std::map<std::string, std::string>& saved) {
    for (const auto& [key, value] : saved) {
      if (get(key) != value) changed(key);
      values_[key] = value;
    }
  };
  if (!committed) restore(before_block_);
  restore(before_local_);
  before_block_.clear();
  before_local_.clear();
}

void SessionSettings::changed(std::string_view name) {
  const SettingInfo* setting = find_setting(name);
  if (setting == nullptr || !setting->reported) return;
  if (std::find(owed_.begin(), owed_.end(), setting->name) == owed_.end())
    owed_.emplace_back(setting->name);
}

void SessionSettings::append_all_reported(std::string& out) {
  for (const SettingInfo& setting : kSettings) {
    if (setting.reported) protocol::append_parameter_status(out, setting.name, get(setting.name));
  }
  owed_.clear();
}

void SessionSettings::append_changes(std::string& out) {
  for (const std::string& name : owed_)
    protocol::append_parameter_status(out, name, get(name));
  owed_.clear();
}

Result<SessionSettings::Shown> SessionSettings::show(std::string_view name) const {
  Shown shown;
  if (name == "all") {
    shown.columns = {"name", "setting", "description"};
    for (const SettingInfo& setting : kSettings)
      shown.rows.push_back({std::string(setting.name), get(setting.name), ""});
    return shown;
  }
  const SettingInfo* setting = find_setting(name);
  if (setting == nullptr && !values_.contains(lower(name))) {
    return Error{"unrecognized configuration parameter \"" + std::string(name) + "\""};
  }
  shown.columns = {setting ? lower(setting->name) : std::string(name)};
  shown.rows.push_back({get(name)});
  return shown;
}

} // namespace switchyard::proxy
