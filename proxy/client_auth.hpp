#pragma once

#include <string>
#include <string_view>

#include "protocol/result.hpp"
#include "proxy/message_reader.hpp"
#include "proxy/runtime.hpp"

namespace switchyard::proxy {

//! Runs the configured authentication exchange with a client logging in as `user` and sends
//! AuthenticationOk on success. An unknown user goes through the same exchange and fails at
//! its end, so the answer does not reveal which users exist.
asio::awaitable<Status> authenticate_client(Stream& stream, MessageReader& reader,
                                            const Runtime& runtime, std::string_view user);

//! Whether an authenticate_client error is a wrong password or unknown user (28P01), as
//! opposed to a protocol error or a disconnect.
bool is_auth_failure(const std::string& error);

} // namespace switchyard::proxy
