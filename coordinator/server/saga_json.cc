#include "coordinator/server/saga_json.h"

#include <cstdint>
#include <limits>
#include <set>
#include <utility>
#include <vector>

namespace txc {
namespace {

// A parsed JSON value. Numbers keep their text, so that "5", "5.0" and "5e0"
// stay apart and an integer is checked without a trip through double.
struct JsonValue {
  enum class Type { kNull, kBool, kNumber, kString, kArray, kObject };
  Type type = Type::kNull;
  bool boolean = false;
  std::string text;  // kNumber: as written; kString: the decoded UTF-8
  std::vector<JsonValue> items;
  std::vector<std::pair<std::string, JsonValue>> members;  // in file order
};

const char* TypeName(JsonValue::Type type) {
  switch (type) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return "a boolean";
    case JsonValue::Type::kNumber: return "a number";
    case JsonValue::Type::kString: return "a string";
    case JsonValue::Type::kArray: return "an array";
    case JsonValue::Type::kObject: return "an object";
  }
  return "?";
}

// RFC 8259 JSON, nothing more (no comments, no trailing commas), nested at
// most kMaxDepth deep.
class JsonReader {
 public:
  explicit JsonReader(const std::string& text) : text_(text) {}

  Result<JsonValue> ReadDocument() {
    JsonValue value;
    TXC_RETURN_IF_ERROR(ReadValue(&value, 0));
    SkipSpace();
    if (pos_ != text_.size()) return Error("unexpected text after the JSON document");
    return value;
  }

 private:
  static constexpr int kMaxDepth = 64;

  Status Error(const std::string& what) const {
    int line = 1, column = 1;
    for (size_t i = 0; i < pos_ && i < text_.size(); ++i) {
      if (text_[i] == '\n') {
        ++line;
        column = 1;
      } else {
        ++column;
      }
    }
    return Status::InvalidArgument("line " + std::to_string(line) + ", column " +
                                   std::to_string(column) + ": " + what);
  }

  void SkipSpace() {
    while (pos_ < text_.size() && (text_[pos_] == ' ' || text_[pos_] == '\t' ||
                                   text_[pos_] == '\n' || text_[pos_] == '\r')) {
      ++pos_;
    }
  }

  bool Consume(const char* word) {
    const std::string w(word);
    if (text_.compare(pos_, w.size(), w) != 0) return false;
    pos_ += w.size();
    return true;
  }

  Status ReadValue(JsonValue* out, int depth) {
    if (depth > kMaxDepth) return Error("nested too deeply");
    SkipSpace();
    if (pos_ >= text_.size()) return Error("unexpected end of the file");
    const char c = text_[pos_];
    if (c == '{') return ReadObject(out, depth);
    if (c == '[') return ReadArray(out, depth);
    if (c == '"') {
      out->type = JsonValue::Type::kString;
      return ReadString(&out->text);
    }
    if (c == '-' || (c >= '0' && c <= '9')) return ReadNumber(out);
    if (Consume("true") || Consume("false")) {
      out->type = JsonValue::Type::kBool;
      out->boolean = c == 't';
      return Status::Ok();
    }
    if (Consume("null")) {
      out->type = JsonValue::Type::kNull;
      return Status::Ok();
    }
    return Error("expected a JSON value");
  }

  Status ReadObject(JsonValue* out, int depth) {
    out->type = JsonValue::Type::kObject;
    ++pos_;  // '{'
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return Status::Ok();
    }
    std::set<std::string> seen;
    for (;;) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') return Error("expected a key in quotes");
      const size_t key_at = pos_;
      std::string key;
      TXC_RETURN_IF_ERROR(ReadString(&key));
      if (!seen.insert(key).second) {
        pos_ = key_at;  // the message points at the repeated key
        return Error("key \"" + key + "\" appears twice");
      }
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':') return Error("expected ':' after a key");
      ++pos_;
      JsonValue value;
      TXC_RETURN_IF_ERROR(ReadValue(&value, depth + 1));
      out->members.emplace_back(std::move(key), std::move(value));
      TXC_ASSIGN_OR_RETURN(const bool more, NextItem('}', "an object"));
      if (!more) return Status::Ok();
    }
  }

  // After an item of an object or an array: true past a ',' (another item
  // follows), false past `close` (the end); an error at anything else.
  Result<bool> NextItem(char close, const char* in) {
    SkipSpace();
    if (pos_ < text_.size() && (text_[pos_] == ',' || text_[pos_] == close)) {
      return text_[pos_++] == ',';
    }
    return Error(std::string("expected ',' or '") + close + "' in " + in);
  }

  Status ReadArray(JsonValue* out, int depth) {
    out->type = JsonValue::Type::kArray;
    ++pos_;  // '['
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return Status::Ok();
    }
    for (;;) {
      JsonValue item;
      TXC_RETURN_IF_ERROR(ReadValue(&item, depth + 1));
      out->items.push_back(std::move(item));
      TXC_ASSIGN_OR_RETURN(const bool more, NextItem(']', "an array"));
      if (!more) return Status::Ok();
    }
  }

  Status ReadNumber(JsonValue* out) {
    const size_t start = pos_;
    auto digits = [&] {
      const size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') ++pos_;
      return pos_ - from;
    };
    if (text_[pos_] == '-') ++pos_;
    const size_t first = pos_;
    const size_t whole = digits();
    if (whole == 0 || (whole > 1 && text_[first] == '0')) return Error("malformed number");
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) return Error("malformed number");
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) ++pos_;
      if (digits() == 0) return Error("malformed number");
    }
    out->type = JsonValue::Type::kNumber;
    out->text = text_.substr(start, pos_ - start);
    return Status::Ok();
  }

  static void AppendUtf8(uint32_t cp, std::string* out) {
    if (cp < 0x80) {
      *out += static_cast<char>(cp);
    } else if (cp < 0x800) {
      *out += static_cast<char>(0xC0 | (cp >> 6));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else if (cp < 0x10000) {
      *out += static_cast<char>(0xE0 | (cp >> 12));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    } else {
      *out += static_cast<char>(0xF0 | (cp >> 18));
      *out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
      *out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
      *out += static_cast<char>(0x80 | (cp & 0x3F));
    }
  }

  Status ReadHex4(uint32_t* out) {
    if (pos_ + 4 > text_.size()) return Error("malformed \\u escape");
    uint32_t v = 0;
    for (int i = 0; i < 4; ++i) {
      const char h = text_[pos_++];
      v <<= 4;
      if (h >= '0' && h <= '9') {
        v |= static_cast<uint32_t>(h - '0');
      } else if (h >= 'a' && h <= 'f') {
        v |= static_cast<uint32_t>(h - 'a' + 10);
      } else if (h >= 'A' && h <= 'F') {
        v |= static_cast<uint32_t>(h - 'A' + 10);
      } else {
        return Error("malformed \\u escape");
      }
    }
    *out = v;
    return Status::Ok();
  }

  Status ReadString(std::string* out) {
    ++pos_;  // '"'
    for (;;) {
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char c = text_[pos_++];
      if (c == '"') return Status::Ok();
      if (static_cast<unsigned char>(c) < 0x20) return Error("control character in a string");
      if (c != '\\') {
        *out += c;
        continue;
      }
      if (pos_ >= text_.size()) return Error("unterminated string");
      const char e = text_[pos_++];
      switch (e) {
        case '"': *out += '"'; break;
        case '\\': *out += '\\'; break;
        case '/': *out += '/'; break;
        case 'b': *out += '\b'; break;
        case 'f': *out += '\f'; break;
        case 'n': *out += '\n'; break;
        case 'r': *out += '\r'; break;
        case 't': *out += '\t'; break;
        case 'u': {
          uint32_t cp = 0;
          TXC_RETURN_IF_ERROR(ReadHex4(&cp));
          if (cp >= 0xD800 && cp <= 0xDBFF) {  // a surrogate pair: the low half must follow
            uint32_t low = 0;
            if (!Consume("\\u")) return Error("unpaired surrogate in a \\u escape");
            TXC_RETURN_IF_ERROR(ReadHex4(&low));
            if (low < 0xDC00 || low > 0xDFFF) return Error("unpaired surrogate in a \\u escape");
            cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
          } else if (cp >= 0xDC00 && cp <= 0xDFFF) {
            return Error("unpaired surrogate in a \\u escape");
          }
          AppendUtf8(cp, out);
          break;
        }
        default: return Error(std::string("unknown escape \\") + e);
      }
    }
  }

  const std::string& text_;
  size_t pos_ = 0;
};

// The value as JSON text, shortened, for a message ("got ...").
std::string Shown(const JsonValue& v) {
  switch (v.type) {
    case JsonValue::Type::kNull: return "null";
    case JsonValue::Type::kBool: return v.boolean ? "true" : "false";
    case JsonValue::Type::kNumber:
      return v.text.size() > 40 ? v.text.substr(0, 40) + "..." : v.text;
    case JsonValue::Type::kString: {
      const std::string s = v.text.size() > 40 ? v.text.substr(0, 40) + "..." : v.text;
      return "\"" + s + "\"";
    }
    case JsonValue::Type::kArray: return "an array";
    case JsonValue::Type::kObject: return "an object";
  }
  return "?";
}

Status WrongType(const std::string& where, const char* wanted, const JsonValue& v) {
  return Status::InvalidArgument(
      where + ": must be " + wanted + ", got " +
      (v.type == JsonValue::Type::kString || v.type == JsonValue::Type::kNumber
           ? Shown(v) + " (" + TypeName(v.type) + ")"
           : Shown(v)));
}

Result<std::string> AsString(const std::string& where, const JsonValue& v) {
  if (v.type != JsonValue::Type::kString) return WrongType(where, "a string", v);
  return v.text;
}

Result<bool> AsBool(const std::string& where, const JsonValue& v) {
  if (v.type != JsonValue::Type::kBool) return WrongType(where, "true or false", v);
  return v.boolean;
}

// A whole number in int32 range: no fraction, no exponent.
Result<int32_t> AsInt32(const std::string& where, const JsonValue& v) {
  if (v.type != JsonValue::Type::kNumber) return WrongType(where, "an integer", v);
  if (v.text.find_first_of(".eE") != std::string::npos) {
    return Status::InvalidArgument(where + ": must be an integer, got " + Shown(v));
  }
  const bool negative = v.text[0] == '-';
  const std::string digits = v.text.substr(negative ? 1 : 0);
  // More than 10 digits is out of range whatever they are.
  int64_t value = 0;
  if (digits.size() <= 10) {
    for (char c : digits) value = value * 10 + (c - '0');
    if (negative) value = -value;
  }
  if (digits.size() > 10 || value < std::numeric_limits<int32_t>::min() ||
      value > std::numeric_limits<int32_t>::max()) {
    return Status::InvalidArgument(where + ": must be between -2147483648 and 2147483647, got " +
                                   Shown(v));
  }
  return static_cast<int32_t>(value);
}

Status UnknownKey(const std::string& where, const std::string& key, const char* known) {
  return Status::InvalidArgument(where + ": unknown key \"" + key + "\" (known: " + known + ")");
}

Result<wire::SagaStep> ReadStep(const std::string& where, const JsonValue& node) {
  if (node.type != JsonValue::Type::kObject) return WrongType(where, "an object", node);
  wire::SagaStep step;
  wire::RetryPolicy policy;  // the IDL defaults for the keys not given
  bool has_policy = false;
  bool has_id = false, has_endpoint = false, has_action = false;
  for (const auto& [key, value] : node.members) {
    const std::string at = where + "." + key;
    if (key == "step_id") {
      TXC_ASSIGN_OR_RETURN(step.step_id, AsString(at, value));
      has_id = true;
    } else if (key == "endpoint") {
      TXC_ASSIGN_OR_RETURN(step.endpoint, AsString(at, value));
      has_endpoint = true;
    } else if (key == "action") {
      TXC_ASSIGN_OR_RETURN(step.action, AsString(at, value));
      has_action = true;
    } else if (key == "compensation") {
      TXC_ASSIGN_OR_RETURN(step.compensation, AsString(at, value));
    } else if (key == "payload") {
      TXC_ASSIGN_OR_RETURN(step.payload, AsString(at, value));
    } else if (key == "depends_on") {
      if (value.type != JsonValue::Type::kArray) {
        return WrongType(at, "an array of step ids", value);
      }
      for (size_t i = 0; i < value.items.size(); ++i) {
        TXC_ASSIGN_OR_RETURN(std::string dep,
                             AsString(at + "[" + std::to_string(i) + "]", value.items[i]));
        step.depends_on.push_back(std::move(dep));
      }
    } else if (key == "concurrent") {
      TXC_ASSIGN_OR_RETURN(bool concurrent, AsBool(at, value));
      step.__set_concurrent(concurrent);
    } else if (key == "max_attempts") {
      TXC_ASSIGN_OR_RETURN(policy.max_attempts, AsInt32(at, value));
      has_policy = true;
    } else if (key == "initial_backoff_ms") {
      TXC_ASSIGN_OR_RETURN(policy.initial_backoff_ms, AsInt32(at, value));
      has_policy = true;
    } else if (key == "max_backoff_ms") {
      TXC_ASSIGN_OR_RETURN(policy.max_backoff_ms, AsInt32(at, value));
      has_policy = true;
    } else {
      return UnknownKey(where, key,
                        "step_id, endpoint, action, compensation, payload, depends_on, "
                        "concurrent, max_attempts, initial_backoff_ms, max_backoff_ms");
    }
  }
  if (!has_id) return Status::InvalidArgument(where + ": \"step_id\" is missing");
  if (!has_endpoint) return Status::InvalidArgument(where + ": \"endpoint\" is missing");
  if (!has_action) return Status::InvalidArgument(where + ": \"action\" is missing");
  if (has_policy) step.__set_retry_policy(policy);
  return step;
}

}  // namespace

Result<wire::SubmitSagaRequest> ParseSagaJson(const std::string& text) {
  TXC_ASSIGN_OR_RETURN(JsonValue root, JsonReader(text).ReadDocument());
  if (root.type != JsonValue::Type::kObject) {
    return Status::InvalidArgument(std::string("the file must hold a JSON object, got ") +
                                   TypeName(root.type));
  }
  wire::SubmitSagaRequest req;
  bool has_steps = false;
  for (const auto& [key, value] : root.members) {
    if (key == "gtid") {
      TXC_ASSIGN_OR_RETURN(std::string gtid, AsString("gtid", value));
      req.__set_gtid(gtid);
    } else if (key == "steps") {
      if (value.type != JsonValue::Type::kArray) {
        return WrongType("steps", "an array of step objects", value);
      }
      for (size_t i = 0; i < value.items.size(); ++i) {
        TXC_ASSIGN_OR_RETURN(wire::SagaStep step,
                             ReadStep("steps[" + std::to_string(i) + "]", value.items[i]));
        req.steps.push_back(std::move(step));
      }
      has_steps = true;
    } else {
      return UnknownKey("top level", key, "gtid, steps");
    }
  }
  if (!has_steps) return Status::InvalidArgument("\"steps\" is missing");
  return req;
}

}  // namespace txc
