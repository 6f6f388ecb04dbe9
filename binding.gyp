{
  "targets": [
    {
      "target_name": "cvm_skr",
      "dependencies": ["<!(node -p \"require('node-addon-api').targets\"):node_addon_api_except"],
      "defines": ["NAPI_VERSION=8"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-fstack-protector-strong"],
      "conditions": [
        ["OS=='linux'", {
          "sources": ["native/addon.cc", "native/tpm_device.cc", "native/sev_guest.cc"]
        }, {
          "sources": ["native/addon_stub.cc"]
        }]
      ]
    }
  ]
}
