# The native addon once more, built with AddressSanitizer for `npm run test:asan`
# (scripts/test-asan.mjs) into test/asan/build/, so the package's own build/ stays as it is. The
# target, its sources and flags come from the root binding.gyp itself, so the two builds cannot
# drift apart; only the sanitizer flags are added here.
{
  "includes": ["../../binding.gyp"],
  "target_defaults": {
    "cflags": ["-fsanitize=address", "-fno-omit-frame-pointer", "-g", "-O1"],
    "ldflags": ["-fsanitize=address"]
  }
}
