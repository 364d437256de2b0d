// The server's TLS context: TLS 1.2 minimum, forward-secret AEAD ciphers only.
#pragma once

#include <boost/asio/ssl/context.hpp>
#include <filesystem>

namespace referrald::http {

// Throws std::runtime_error naming the file that cannot be loaded.
boost::asio::ssl::context make_server_tls_context(const std::filesystem::path& certificate,
                                                  const std::filesystem::path& private_key);

}  // namespace referrald::http
