#include "http/tls.hpp"

#include <openssl/ssl.h>

#include <stdexcept>

namespace referrald::http {

namespace ssl = boost::asio::ssl;

ssl::context make_server_tls_context(const std::filesystem::path& certificate,
                                     const std::filesystem::path& private_key) {
  ssl::context ctx(ssl::context::tls_server);
  ctx.set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                  ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use |
                  ssl::context::no_compression);
  SSL_CTX* native = ctx.native_handle();
  SSL_CTX_set_min_proto_version(native, TLS1_2_VERSION);
  SSL_CTX_set_options(native, SSL_OP_NO_RENEGOTIATION | SSL_OP_CIPHER_SERVER_PREFERENCE);
  // TLS 1.2: ECDHE key exchange with AEAD ciphers only. TLS 1.3 suites are all AEAD.
  if (SSL_CTX_set_cipher_list(native,
                              "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
                              "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
                              "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305") != 1) {
    throw std::runtime_error("TLS: no usable cipher suites");
  }
  boost::system::error_code ec;
  ctx.use_certificate_chain_file(certificate.string(), ec);
  if (ec) {
    throw std::runtime_error("cannot load TLS certificate " + certificate.string() + ": " + ec.message());
  }
  ctx.use_private_key_file(private_key.string(), ssl::context::pem, ec);
  if (ec) {
    throw std::runtime_error("cannot load TLS private key " + private_key.string() + ": " + ec.message());
  }
  if (SSL_CTX_check_private_key(native) != 1) {
    throw std::runtime_error("TLS private key " + private_key.string() + " does not match certificate " +
                             certificate.string());
  }
  return ctx;
}

}  // namespace referrald::http
