{
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
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Werror"]
    }
  ]
}
