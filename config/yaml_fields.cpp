#include "config/yaml_fields.hpp"

#include <sstream>

#include "config/duration.hpp"

namespace switchyard::config::yaml_fields {

YAML::Node lookup(const YAML::Node& root, std::string_view path) {
  YAML::Node node = YAML::Clone(root);
  size_t pos = 0;
  while (true) {
    size_t dot = path.find('.', pos);
    std::string part(
        path.substr(pos, dot == std::string_view::npos ? std::string_view::npos : dot - pos));
    if (!node.IsMap()) return YAML::Node(YAML::NodeType::Undefined);
    YAML::Node child = node[part];
    if (!child) return YAML::Node(YAML::NodeType::Undefined);
    node.reset(child);
    if (dot == std::string_view::npos) return node;
    pos = dot + 1;
  }
}

std::optional<std::string> scalar(const YAML::Node& root, std::string_view path, Checker& check) {
  YAML::Node node = lookup(root, path);
  if (!node || node.IsNull()) return std::nullopt;
  if (!node.IsScalar()) {
    check.fail(path, "must be a single value");
    return std::nullopt;
  }
  return node.Scalar();
}

void read_duration(const YAML::Node& root, std::string_view path, std::chrono::milliseconds& out,
                   Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  auto value = parse_duration(*text);
  if (!value) {
    check.fail(path, "must be a duration such as 500ms, 10s, 5m (got '" + *text + "')");
    return;
  }
  out = *value;
}

void read_bool(const YAML::Node& root, std::string_view path, bool& out, Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  for (std::string_view yes : {"true", "yes", "on"}) {
    if (*text == yes) {
      out = true;
      return;
    }
  }
  for (std::string_view no : {"false", "no", "off"}) {
    if (*text == no) {
      out = false;
      return;
    }
  }
  check.fail(path, "must be true or false (got '" + *text + "')");
}

void read_number(const YAML::Node& root, std::string_view path, double& out, double min, double max,
                 Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  double value = 0;
  if (!parse_whole(*text, value) || !(value >= min && value <= max)) {
    std::ostringstream range;
    range << "must be a number from " << min << " to " << max << " (got '" << *text << "')";
    check.fail(path, range.str());
    return;
  }
  out = value;
}

std::optional<double> parse_percent(std::string_view text) {
  double value = -1;
  if (!parse_whole(text, value) || !(value >= 0 && value <= 100)) return std::nullopt;
  return value;
}

void read_percent(const YAML::Node& root, std::string_view path, double& out, Checker& check) {
  auto text = scalar(root, path, check);
  if (!text) return;
  auto value = parse_percent(*text);
  if (!value) {
    check.fail(path, "must be a number from 0 to 100 (got '" + *text + "')");
    return;
  }
  out = *value;
}

// A {name: percent} mapping, in file order.
void read_percent_map(const YAML::Node& root, std::string_view path,
                      std::vector<std::pair<std::string, double>>& out, Checker& check) {
  YAML::Node node = lookup(root, path);
  if (!node || node.IsNull()) return;
  if (!node.IsMap()) {
    check.fail(path, "must be a mapping of name: percent");
    return;
  }
  for (const auto& entry : node) {
    std::string name = entry.first.as<std::string>();
    std::string key = std::string(path) + "." + name;
    if (!entry.second.IsScalar()) {
      check.fail(key, "must be a number from 0 to 100");
      return;
    }
    auto value = parse_percent(entry.second.Scalar());
    if (!value) {
      check.fail(key, "must be a number from 0 to 100 (got '" + entry.second.Scalar() + "')");
      return;
    }
    out.emplace_back(std::move(name), *value);
  }
}

void read_name_list(const YAML::Node& root, std::string_view path, std::vector<std::string>& out,
                    Checker& check) {
  YAML::Node node = lookup(root, path);
  if (!node || node.IsNull()) return;
  if (!node.IsSequence()) {
    check.fail(path, "must be a list of names");
    return;
  }
  for (const auto& item : node) {
    if (!item.IsScalar() || item.Scalar().empty()) {
      check.fail(path, "must be a list of names");
      return;
    }
    out.push_back(item.Scalar());
  }
}

} // namespace switchyard::config::yaml_fields
