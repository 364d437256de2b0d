// Standard base64 back to bytes in pieces (a file's base64 as a parser
// reads it, intake/validator.cpp): the decoder of base64_decode
// (util/crypto.hpp), OpenSSL's, fed piece by piece. The pieces may be cut
// anywhere; what is accepted is what base64_decode accepts of them joined.
// Apart from util/crypto.hpp, which most of the daemon includes.
#pragma once

#include <functional>
#include <string_view>

namespace referrald {

class Base64Decoder {
 public:
  Base64Decoder();
  ~Base64Decoder();
  Base64Decoder(const Base64Decoder&) = delete;
  Base64Decoder& operator=(const Base64Decoder&) = delete;

  // Decodes the next piece, handing what it yields to `out`; false once the
  // text is not base64 (and for every piece after).
  bool update(std::string_view text, const std::function<void(std::string_view)>& out);
  // The end of the text: false when it is not whole.
  bool finish(const std::function<void(std::string_view)>& out);

 private:
  void* ctx_;  // EVP_ENCODE_CTX, kept out of this header
  bool failed_ = false;
  bool stopped_ = false;  // past the end marker ('-'): the rest is not read
  int padding_ = 0;       // '=' that ended what was decoded so far
};

}  // namespace referrald
