# cuda.mk — CUDA backend rules (included by the Makefile; plain `make` never needs nvcc).
#   make cuda        -> build/libsinkstream.so WITH the CUDA backend (objects in build/cuda-obj)
#   make cuda-check  -> compile + link the CUDA library into build/cuda/ only (CI: no GPU needed,
#                       leaves the CPU library alone)
#   make cuda-test   -> build/cuda/gpu_test_cuda_vs_cpu and build/cuda/gpu_bench_decode
#                       (run by tests/gpu/check.sh; they skip with a message when no GPU is present)
# Variables: CUDA_HOME (default: the folder above `nvcc` on PATH, else /usr/local/cuda),
#            CUDA_ARCHS (default "80 90": SASS for A100 and H100/H200, plus PTX of the last one).
# cuBLAS: loaded at run time with dlopen (see src/backend_cuda.c), so building needs only nvcc
# and the CUDA runtime; without a cuBLAS library at run time the backend's own tensor-core
# kernels do every matmul.

NVCC_PATH  := $(shell command -v $(NVCC) 2>/dev/null)
CUDA_HOME  ?= $(if $(NVCC_PATH),$(abspath $(dir $(realpath $(NVCC_PATH)))/..),/usr/local/cuda)
# /usr/local/bin/nvcc may be a wrapper script: fall back to /usr/local/cuda when the guess has no headers
ifeq ($(wildcard $(CUDA_HOME)/include/cuda_runtime_api.h),)
CUDA_HOME  := /usr/local/cuda
endif
CUDA_ARCHS ?= 80 90
CUDA_LAST  := $(lastword $(CUDA_ARCHS))
GENCODE    := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
              -gencode arch=compute_$(CUDA_LAST),code=compute_$(CUDA_LAST)
NVCCFLAGS  ?= -O3 -lineinfo
NVCC_ALL   := $(NVCCFLAGS) $(GENCODE) -std=c++17 -Xcompiler -fPIC,-fvisibility=hidden -I../kernels
CUDA_LIBDIR := $(firstword $(wildcard $(CUDA_HOME)/lib64 $(CUDA_HOME)/lib $(CUDA_HOME)/targets/x86_64-linux/lib))
CUDA_LINK  := -L$(CUDA_LIBDIR) -Wl,-rpath,$(CUDA_LIBDIR) -lcudart -ldl -lstdc++

KERNEL_SRCS := $(wildcard ../kernels/*.cu)
KERNEL_HDRS := $(wildcard ../kernels/*.h ../kernels/*.cuh) src/cache_geometry.h

# ---- generic rules, parameterised by the object folder CUDA_OBJ ---------------------------
CUDA_BUILD ?= $(BUILD)/cuda
CUDA_OBJ   := $(CUDA_BUILD)/obj
CUDA_COBJS := $(patsubst src/%.c,$(CUDA_OBJ)/%.o,$(SRCS))
CUDA_KOBJS := $(patsubst ../kernels/%.cu,$(CUDA_OBJ)/kernels/%.o,$(KERNEL_SRCS))
CUDA_CFLAGS := $(CFLAGS) -DSS_WITH_CUDA -I$(CUDA_HOME)/include -I../kernels

$(CUDA_OBJ) $(CUDA_OBJ)/kernels:
	mkdir -p $@

$(CUDA_OBJ)/%.o: src/%.c $(HDRS) $(KERNEL_HDRS) | $(CUDA_OBJ)
	$(CC) $(CUDA_CFLAGS) -c $< -o $@

$(CUDA_OBJ)/kernels/%.o: ../kernels/%.cu $(KERNEL_HDRS) | $(CUDA_OBJ)/kernels
	$(NVCC) $(NVCC_ALL) -c $< -o $@

$(CUDA_BUILD)/libsinkstream.so: $(CUDA_COBJS) $(CUDA_KOBJS)
	$(CC) -shared $(CFLAGS) -Wl,--no-undefined -o $@ $^ $(LDLIBS) $(CUDA_LINK)

GPU_PROGS := gpu_test_cuda_vs_cpu gpu_bench_decode
$(CUDA_BUILD)/%: tests/%.c tests/test_util.h tests/gpu_model.h tests/gguf_writer.h $(CUDA_COBJS) $(CUDA_KOBJS)
	$(CC) $(CUDA_CFLAGS) -fvisibility=default -Iinclude -Isrc $< $(CUDA_COBJS) $(CUDA_KOBJS) -o $@ $(LDLIBS) $(CUDA_LINK)

.PHONY: cuda cuda-check cuda-test
cuda-check: $(CUDA_BUILD)/libsinkstream.so
	@echo "cuda-check: compiled and linked $(CUDA_BUILD)/libsinkstream.so (nvcc $(CUDA_ARCHS))"

cuda-test: $(CUDA_BUILD)/libsinkstream.so $(addprefix $(CUDA_BUILD)/,$(GPU_PROGS))

# `make cuda`: the CUDA library in place of the CPU one (same objects as cuda-check).
cuda: $(CUDA_BUILD)/libsinkstream.so
	cp $(CUDA_BUILD)/libsinkstream.so $(BUILD)/libsinkstream.so
