# The native addon: one shared object for the OS layer (src/os/binding.ts loads it).
{
  "variables": {
    # Warnings fail the builds this project makes itself (CI, npm ci in a checkout when CI sets it,
    # the prebuilds shipped in the package: IVSHMEM_WERROR=1), so a warning is fixed before a
    # release; a user's fallback build from source does not set it, so a newer compiler's new
    # warnings cannot stop an install of code that ours compiled cleanly.
    "ivshmem_werror%": "<!(node -p \"process.env.IVSHMEM_WERROR === '1' ? 1 : 0\")"
  },
  "targets": [
    {
      "target_name": "ivshmem_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/registry.cc",
        "native/eventfd.cc",
        "native/memory.cc",
        "native/socket.cc",
        "native/listening.cc",
        "native/poller.cc",
        "native/wait.cc",
        "native/clock.cc",
        "native/kvm/kvm.cc",
        "native/kvm/kick.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "conditions": [
        ["ivshmem_werror==1", { "cflags_cc": ["-Werror"] }]
      ]
    }
  ]
}
