#pragma once
// The error type of flowforce_md.

#include <stdexcept>

namespace flowforce::md {

/** Bad input or a failed operation (file missing, corrupt, helper failed): the message says which. */
class MDError : public std::runtime_error {
public:
    using std::runtime_error::runtime_error;
};

}  // namespace flowforce::md
