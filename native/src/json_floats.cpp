#include "lakehouse/json_floats.h"

#include <charconv>
#include <cstdint>
#include <system_error>

namespace lakehouse {
namespace {

bool is_space(char c) { return c == ' ' || c == '\t' || c == '\n' || c == '\r'; }
bool is_digit(char c) { return c >= '0' && c <= '9'; }

// 10^0 .. 10^22: every one exact in a double
constexpr double kPow10[] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,  1e8,  1e9,  1e10, 1e11,
                             1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

// Reads the JSON number at p (RFC 8259 section 6; from_chars alone would also take "inf",
// "nan", "1." and leading zeros) into `value`, rounded to nearest as a double. Returns the
// end of the number, or nullptr if there is none or it is beyond double's range (1e400, or
// 1e-400: too small for a double's subnormals).
const char* read_number(const char* p, const char* end, double& value) {
  const char* const start = p;
  const bool negative = p < end && *p == '-';
  if (negative) ++p;
  if (p == end || !is_digit(*p)) return nullptr;
  // Clinger's fast path: up to 15 significant digits with a power of ten up to 22 make an
  // exact integer and an exact power of ten, so one multiply or divide rounds correctly.
  std::uint64_t mantissa = 0;
  int digits = 0;
  int exponent = 0;
  if (*p == '0') {
    ++p;
  } else {
    for (; p < end && is_digit(*p); ++p, ++digits) mantissa = mantissa * 10 + unsigned(*p - '0');
  }
  bool integer = true;
  if (p < end && *p == '.') {
    integer = false;
    ++p;
    if (p == end || !is_digit(*p)) return nullptr;
    for (; p < end && is_digit(*p); ++p) {
      if (mantissa != 0 || *p != '0') ++digits;  // leading zeros are not significant
      mantissa = mantissa * 10 + unsigned(*p - '0');
      --exponent;
    }
  }
  bool fast = digits <= 15;
  if (p < end && (*p == 'e' || *p == 'E')) {
    integer = false;
    ++p;
    const bool minus = p < end && *p == '-';
    if (p < end && (*p == '+' || *p == '-')) ++p;
    if (p == end || !is_digit(*p)) return nullptr;
    int e = 0;
    for (; p < end && is_digit(*p); ++p) {
      if (e < 10000) e = e * 10 + (*p - '0');
    }
    exponent += minus ? -e : e;
  }
  if (fast && exponent >= -22 && exponent <= 22) {
    const double m = double(mantissa);
    value = exponent < 0 ? m / kPow10[-exponent] : m * kPow10[exponent];
    if (negative) value = -value;
  } else {
    const auto [ptr, ec] = std::from_chars(start, p, value);
    if (ec != std::errc() || ptr != p) return nullptr;
  }
  if (integer && value == 0) value = 0;  // "-0" is the integer 0 there, not -0.0
  return p;
}

}  // namespace

bool parse_json_float_array(std::string_view text, std::vector<float>& out) {
  const char* p = text.data();
  const char* const end = p + text.size();
  auto skip = [&] {
    while (p < end && is_space(*p)) ++p;
  };
  skip();
  if (p == end || *p != '[') return false;
  ++p;
  skip();
  if (p < end && *p == ']') {
    ++p;
  } else {
    for (;;) {
      double value = 0;
      const char* stop = read_number(p, end, value);
      if (stop == nullptr) return false;
      out.push_back(static_cast<float>(value));  // IEEE rounding; beyond float's range: inf
      p = stop;
      skip();
      if (p == end) return false;
      if (*p == ']') {
        ++p;
        break;
      }
      if (*p != ',') return false;
      ++p;
      skip();
    }
  }
  skip();
  return p == end;
}

}  // namespace lakehouse
