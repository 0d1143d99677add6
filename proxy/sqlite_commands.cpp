#include "proxy/sqlite_commands.hpp"

#include <cctype>
#include <vector>

namespace switchyard::proxy {
namespace {

enum class TokenKind { kWord, kQuotedName, kString, kSymbol };

struct Token {
  TokenKind kind;
  std::string text; // words lower-cased; names and strings without their quotes
};

// Splits a statement into tokens, skipping whitespace and comments. Returns false on an
// unterminated quote, which SQLite then reports.
bool tokenize(std::string_view sql, std::vector<Token>& tokens) {
  size_t i = 0;
  while (i < sql.size()) {
    char c = sql[i];
    if (std::isspace(static_cast<unsigned char>(c))) {
      ++i;
    } else if (sql.substr(i, 2) == "--") {
      while (i < sql.size() && sql[i] != '\n')
        ++i;
    } else if (sql.substr(i, 2) == "/*") {
      size_t end = sql.find("*/", i + 2);
      if (end == std::string_view::npos) return false;
      i = end + 2;
    } else if (c == '\'' || c == '"') {
      std::string text;
      size_t j = i + 1;
      while (true) {
        if (j >= sql.size()) return false;
        if (sql[j] == c) {
          if (j + 1 < sql.size() && sql[j + 1] == c) {
            text += c;
            j += 2;
            continue;
          }
          break;
        }
        text += sql[j++];
      }
      tokens.push_back({c == '\'' ? TokenKind::kString : TokenKind::kQuotedName, text});
      i = j + 1;
    } else if (std::isalnum(static_cast<unsigned char>(c)) || c == '_' || c == '.' ||
               static_cast<unsigned char>(c) >= 0x80) {
      size_t j = i;
      while (j < sql.size() &&
             (std::isalnum(static_cast<unsigned char>(sql[j])) || sql[j] == '_' || sql[j] == '.' ||
              sql[j] == '$' || static_cast<unsigned char>(sql[j]) >= 0x80))
        ++j;
      std::string word(sql.substr(i, j - i));
      for (char& ch : word)
        ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
      tokens.push_back({TokenKind::kWord, word});
      i = j;
    } else {
      tokens.push_back({TokenKind::kSymbol, std::string(1, c)});
      ++i;
    }
  }
  return true;
}

bool is_word(const std::vector<Token>& tokens, size_t i, std::string_view word) {
  return i < tokens.size() && tokens[i].kind == TokenKind::kWord && tokens[i].text == word;
}

// A name: a word or a quoted identifier.
bool is_name(const std::vector<Token>& tokens, size_t i) {
  return i < tokens.size() &&
         (tokens[i].kind == TokenKind::kWord || tokens[i].kind == TokenKind::kQuotedName);
}

EngineStatement transaction_start(const std::vector<Token>& tokens, size_t i) {
  EngineStatement statement{.command = EngineCommand::kBegin};
  for (; i < tokens.size(); ++i) {
    if (is_word(tokens, i, "read") && is_word(tokens, i + 1, "only")) statement.read_only = true;
    if (is_word(tokens, i, "immediate") || is_word(tokens, i, "exclusive"))
      statement.immediate = true;
  }
  return statement;
}

EngineStatement set_statement(const std::vector<Token>& tokens) {
  EngineStatement statement{.command = EngineCommand::kSet};
  size_t i = 1;
  if (is_word(tokens, i, "session") && is_word(tokens, i + 1, "characteristics"))
    return {.command = EngineCommand::kSetIgnored};
  if (is_word(tokens, i, "transaction")) return {.command = EngineCommand::kSetIgnored};
  if (is_word(tokens, i, "session") || is_word(tokens, i, "local")) {
    statement.local = tokens[i].text == "local";
    ++i;
  }
  if (is_word(tokens, i, "time") && is_word(tokens, i + 1, "zone")) {
    statement.name = "timezone";
    i += 2;
  } else {
    if (!is_name(tokens, i)) return {};
    statement.name = tokens[i].text;
    ++i;
    if (is_word(tokens, i, "to") || (i < tokens.size() && tokens[i].text == "=")) {
      ++i;
    } else {
      return {};
    }
  }
  if (is_word(tokens, i, "default") && i + 1 == tokens.size()) {
    statement.to_default = true;
    return statement;
  }
  bool expect_item = true;
  for (; i < tokens.size(); ++i) {
    const Token& token = tokens[i];
    if (token.kind == TokenKind::kSymbol && token.text == ",") {
      if (expect_item) return {};
      statement.value += ", ";
      expect_item = true;
    } else if (token.kind == TokenKind::kSymbol && token.text == "-" && expect_item) {
      statement.value += '-';
    } else if (token.kind != TokenKind::kSymbol && expect_item) {
      statement.value += token.text;
      expect_item = false;
    } else {
      return {};
    }
  }
  if (expect_item) return {};
  return statement;
}

} // namespace

EngineStatement recognise_statement(std::string_view sql) {
  std::vector<Token> tokens;
  if (!tokenize(sql, tokens)) return {};
  if (tokens.empty()) return {.command = EngineCommand::kEmpty};
  if (tokens[0].kind != TokenKind::kWord) return {};
  // A trailing semicolon was already cut off by the statement splitter.
  const std::string& first = tokens[0].text;
  if (first == "begin") return transaction_start(tokens, 1);
  if (first == "start" && is_word(tokens, 1, "transaction")) return transaction_start(tokens, 2);
  if (first == "commit" || first == "end") {
    if (is_word(tokens, 1, "prepared"))
      return {.command = EngineCommand::kUnsupported, .what = "COMMIT PREPARED"};
    return {.command = EngineCommand::kCommit};
  }
  if (first == "rollback" || first == "abort") {
    size_t i = 1;
    if (is_word(tokens, i, "work") || is_word(tokens, i, "transaction")) ++i;
    if (is_word(tokens, i, "prepared"))
      return {.command = EngineCommand::kUnsupported, .what = "ROLLBACK PREPARED"};
    if (is_word(tokens, i, "to")) {
      ++i;
      if (is_word(tokens, i, "savepoint")) ++i;
      if (!is_name(tokens, i)) return {};
      return {.command = EngineCommand::kRollbackTo, .name = tokens[i].text};
    }
    return {.command = EngineCommand::kRollback};
  }
  if (first == "savepoint" && is_name(tokens, 1))
    return {.command = EngineCommand::kSavepoint, .name = tokens[1].text};
  if (first == "release") {
    size_t i = is_word(tokens, 1, "savepoint") ? 2 : 1;
    if (!is_name(tokens, i)) return {};
    return {.command = EngineCommand::kRelease, .name = tokens[i].text};
  }
  if (first == "set") return set_statement(tokens);
  if (first == "reset" && is_name(tokens, 1)) {
    if (is_word(tokens, 1, "time") && is_word(tokens, 2, "zone"))
      return {.command = EngineCommand::kReset, .name = "timezone"};
    return {.command = EngineCommand::kReset, .name = tokens[1].text};
  }
  if (first == "show" && is_name(tokens, 1)) {
    if (is_word(tokens, 1, "time") && is_word(tokens, 2, "zone"))
      return {.command = EngineCommand::kShow, .name = "timezone"};
    return {.command = EngineCommand::kShow, .name = tokens[1].text};
  }
  if (first == "discard" && is_word(tokens, 1, "all"))
    return {.command = EngineCommand::kDiscard, .name = "all"};
  if (first == "discard") return {.command = EngineCommand::kDiscard};
  if (first == "deallocate") {
    size_t i = is_word(tokens, 1, "prepare") ? 2 : 1;
    if (!is_name(tokens, i)) return {};
    return {.command = EngineCommand::kDeallocate, .name = tokens[i].text};
  }
  for (std::string_view pg_only : {"copy", "listen", "unlisten", "notify", "prepare", "execute",
                                   "lock", "cluster", "checkpoint", "truncate", "grant", "revoke",
                                   "comment", "declare", "fetch", "move", "close", "do", "call"}) {
    if (first == pg_only) {
      std::string what = first;
      for (char& c : what)
        c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
      return {.command = EngineCommand::kUnsupported, .what = what};
    }
  }
  return {};
}

std::string command_verb(std::string_view sql) {
  std::vector<Token> tokens;
  if (!tokenize(sql, tokens) || tokens.empty()) return "SELECT";
  size_t i = 0;
  if (is_word(tokens, 0, "with")) {
    // The verb is the first keyword after the CTEs, at parenthesis depth 0.
    int depth = 0;
    for (i = 1; i < tokens.size(); ++i) {
      if (tokens[i].kind == TokenKind::kSymbol && tokens[i].text == "(") ++depth;
      if (tokens[i].kind == TokenKind::kSymbol && tokens[i].text == ")") --depth;
      if (depth == 0 && (is_word(tokens, i, "select") || is_word(tokens, i, "insert") ||
                         is_word(tokens, i, "update") || is_word(tokens, i, "delete") ||
                         is_word(tokens, i, "replace") || is_word(tokens, i, "values")))
        break;
    }
    if (i == tokens.size()) return "SELECT";
  }
  std::string verb = tokens[i].kind == TokenKind::kWord ? tokens[i].text : "select";
  if (verb == "replace" || verb == "insert") return "INSERT";
  if (verb == "values") return "SELECT";
  auto upper = [](std::string word) {
    for (char& c : word)
      c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
    return word;
  };
  if (verb == "create" || verb == "drop" || verb == "alter") {
    for (size_t j = i + 1; j < tokens.size(); ++j) {
      if (is_word(tokens, j, "unique") || is_word(tokens, j, "temp") ||
          is_word(tokens, j, "temporary") || is_word(tokens, j, "virtual"))
        continue;
      if (tokens[j].kind == TokenKind::kWord) return upper(verb) + " " + upper(tokens[j].text);
      break;
    }
  }
  return upper(verb);
}

} // namespace switchyard::proxy
