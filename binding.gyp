# The native addon: one shared object for the OS layer (src/os/binding.ts loads it).
{
  "variables": {
    # Warnings fail the builds this project makes itself (CI, npm ci in a checkout when CI sets it,
    # the prebuilds shipped in the package: IVSHMEM_WERROR=1), so a warning is fixed before a
    # release; a user's fallback build from source does not set it, so a newer compiler's new
    # warnings cannot stop an install of code that ours compiled cleanly.
    "ivshmem_werror%": "<!(node -p \"process.env.IVSHMEM_WERROR === '1' ? 1 : 0\")",
    # The fast-call module (native/fast/) is built unless IVSHMEM_FAST_BUILD=0: the package's
    # prebuilds leave it out (it binds to one Node's V8, where the N-API addon loads in any).
    "ivshmem_fast%": "<!(node -p \"process.env.IVSHMEM_FAST_BUILD === '0' ? 0 : 1\")"
  },
  "targets": [
    {
      "target_name": "ivshmem_native",
      "sources": [
        "native/addon.cc",
        "native/errors.cc",
        "native/registry.cc",
        "native/eventfd.cc",
        "native/eventfd-io.cc",
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
  ],
  "conditions": [
    ["ivshmem_fast==1", {
      "targets": [
        {
          # V8 fast API calls for the per-doorbell eventfd write and drain (src/os/fast-binding.ts).
          "target_name": "ivshmem_fast",
          "sources": ["native/fast/fast.cc", "native/eventfd-io.cc"],
          # node.h's NODE_MODULE_INIT casts the init function to its registration type itself.
          "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-cast-function-type"],
          "conditions": [
            ["ivshmem_werror==1", { "cflags_cc": ["-Werror"] }]
          ]
        }
      ]
    }]
  ]
}
