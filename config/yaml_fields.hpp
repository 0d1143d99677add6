#pragma once

// Typed reads of dotted YAML keys with one precise error per failure; shared by the
// parsers of the config's sections. Internal to the config module.

#include <yaml-cpp/yaml.h>

#include <charconv>
#include <chrono>
#include <cstdint>
#include <initializer_list>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

namespace switchyard::config::yaml_fields {

// Parses all of `text` as a number; false on junk, trailing characters or overflow.
template <class T> bool parse_whole(std::string_view text, T& value) {
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  return ec == std::errc() && ptr == end;
}

// Collects the first error with its key, so each check reads as one line.
class Checker {
public:
  explicit Checker(std::string_view source) : source_(source) {}

  void fail(std::string_view key, std::string_view why) {
    if (error_.empty()) error_ = source_ + ": " + std::string(key) + ": " + std::string(why);
  }
  bool failed() const { return !error_.empty(); }
  const std::string& error() const { return error_; }

private:
  std::string source_;
  std::string error_;
};

//! The node at dotted `path` under `root`, or an undefined node.
YAML::Node lookup(const YAML::Node& root, std::string_view path);

//! The scalar at `path`, or nothing when absent or null (a non-scalar fails `check`).
std::optional<std::string> scalar(const YAML::Node& root, std::string_view path, Checker& check);

template <class T>
void read_uint(const YAML::Node& root, std::string_view path, T& out, uint64_t min, uint64_t max,
               Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  uint64_t value = 0;
  if (!parse_whole(*text, value) || value < min || value > max) {
    check.fail(path, "must be an integer from " + std::to_string(min) + " to " +
                         std::to_string(max) + " (got '" + *text + "')");
    return;
  }
  out = static_cast<T>(value);
}

void read_duration(const YAML::Node& root, std::string_view path, std::chrono::milliseconds& out,
                   Checker& check);

//! true/false (also yes/no, on/off).
void read_bool(const YAML::Node& root, std::string_view path, bool& out, Checker& check);

//! A number from `min` to `max`.
void read_number(const YAML::Node& root, std::string_view path, double& out, double min, double max,
                 Checker& check);

template <class E>
void read_enum(const YAML::Node& root, std::string_view path, E& out,
               std::type_identity_t<std::initializer_list<std::pair<std::string_view, E>>> choices,
               Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  std::string names;
  for (const auto& [name, value] : choices) {
    if (name == *text) {
      out = value;
      return;
    }
    names += names.empty() ? "" : ", ";
    names += name;
  }
  check.fail(path, "must be one of " + names + " (got '" + *text + "')");
}

std::optional<double> parse_percent(std::string_view text);
void read_percent(const YAML::Node& root, std::string_view path, double& out, Checker& check);
//! A {name: percent} mapping, in file order.
void read_percent_map(const YAML::Node& root, std::string_view path,
                      std::vector<std::pair<std::string, double>>& out, Checker& check);
void read_name_list(const YAML::Node& root, std::string_view path, std::vector<std::string>& out,
                    Checker& check);

} // namespace switchyard::config::yaml_fields
