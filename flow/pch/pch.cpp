// Translation unit that owns the precompiled LibTorch header (see flow/CMakeLists.txt).
