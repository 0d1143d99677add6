// Boost.JSON is header-only in this Boost; its implementation is compiled once, here, for
// every module of the program.
#include <boost/json/src.hpp>
