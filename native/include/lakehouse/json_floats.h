// A JSON array of numbers ("[0.25, -1e-3, 7]") read straight into float32, for the vectors of
// search and add bodies: a general JSON decoder makes one Python float per element and numpy
// then converts them, which costs more than the search of a small index.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

namespace lakehouse {

// Appends the numbers of the JSON array `text` (whitespace allowed around it and its tokens)
// to `out` and returns true. Each number is rounded to double, then to float32: the values a
// decoder to Python floats followed by a float32 cast gives, bit for bit (a number beyond
// float32's range becomes +-inf, as there). Returns false, with `out` unspecified, for
// anything else: another JSON value, a syntax error, a number beyond double's range
// (1e400, or 1e-400: too small for a double's subnormals). The
// caller then decodes the text the general way, which names what is wrong.
bool parse_json_float_array(std::string_view text, std::vector<float>& out);

}  // namespace lakehouse
