# cuda_emu.mk — the CUDA backend on the CPU, through the emulator in tests/cuda_emu/ (no GPU,
# no nvcc): the kernels/*.cu sources, with their <<<>>> launches rewritten, compile with g++
# against the emulator's headers; backend_cuda.c and the GPU tests compile unchanged.
#   make cuda-emu        -> build/cuda-emu/{test_cuda_emu,test_cuda_backend_errors,gpu_test_cuda_vs_cpu,
#                           gpu_bench_decode,libsinkstream.so}
#   make cuda-emu-test   -> build them, run test_cuda_emu, test_cuda_backend_errors, gpu_test_cuda_vs_cpu
#   make cuda-emu-asan   -> the same under AddressSanitizer + UndefinedBehaviorSanitizer
#   make cuda-emu-ci     -> what CI runs (see the rule)
# Variables: EMU_ENV (environment for the runs, e.g. "SSEMU_ORDER=reverse SS_GPU_TEST_STEPS=40").

CXX      ?= g++
EMU_BUILD ?= $(BUILD)/cuda-emu
EMU_DIR   := tests/cuda_emu
EMU_INC   := -I$(EMU_DIR)/include -I../kernels
EMU_CFLAGS   := $(CFLAGS) -DSS_WITH_CUDA $(EMU_INC) -fno-strict-aliasing
EMU_CXXFLAGS := $(OPTFLAGS) $(SANFLAGS) -std=c++17 -Wall -Wextra -Wno-unused-parameter -fPIC -pthread \
                -fno-strict-aliasing -Wno-unknown-pragmas $(EMU_INC)
EMU_COBJS := $(patsubst src/%.c,$(EMU_BUILD)/obj/%.o,$(SRCS))
EMU_KOBJS := $(patsubst ../kernels/%.cu,$(EMU_BUILD)/kernels/%.o,$(wildcard ../kernels/*.cu))
EMU_RT    := $(EMU_BUILD)/obj/emu_runtime.o $(EMU_BUILD)/obj/emu_scheduler.o
EMU_LIB_OBJS := $(EMU_COBJS) $(EMU_KOBJS) $(EMU_RT)   # the library with the emulated CUDA backend
EMU_HDRS  := $(wildcard $(EMU_DIR)/include/*.h) $(wildcard ../kernels/*.h ../kernels/*.cuh) src/cache_geometry.h
EMU_ENV   ?=

$(EMU_BUILD)/obj $(EMU_BUILD)/kernels:
	mkdir -p $@

$(EMU_BUILD)/obj/%.o: src/%.c $(HDRS) $(EMU_HDRS) | $(EMU_BUILD)/obj
	$(CC) $(EMU_CFLAGS) -c $< -o $@

$(EMU_BUILD)/kernels/%.cc: ../kernels/%.cu $(EMU_DIR)/rewrite_launches.py | $(EMU_BUILD)/kernels
	python3 $(EMU_DIR)/rewrite_launches.py $< $@

$(EMU_BUILD)/kernels/%.o: $(EMU_BUILD)/kernels/%.cc $(EMU_HDRS)
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

$(EMU_BUILD)/obj/emu_%.o: $(EMU_DIR)/emu_%.cc $(EMU_DIR)/emu_internal.h $(EMU_HDRS) | $(EMU_BUILD)/obj
	$(CXX) $(EMU_CXXFLAGS) -c $< -o $@

EMU_PROGS := test_cuda_emu test_cuda_backend_errors gpu_test_cuda_vs_cpu
EMU_LINK_C = $(CC) $(EMU_CFLAGS) -fvisibility=default -Iinclude -Isrc -Itests $< $(EMU_LIB_OBJS) -o $@ $(LDLIBS) -lstdc++ -ldl
$(EMU_BUILD)/gpu_%: tests/gpu_%.c tests/test_util.h tests/gpu_model.h tests/gguf_writer.h $(EMU_LIB_OBJS)
	$(EMU_LINK_C)
$(EMU_BUILD)/test_cuda_backend_errors: $(EMU_DIR)/test_cuda_backend_errors.c tests/test_util.h tests/gpu_model.h $(EMU_LIB_OBJS)
	$(EMU_LINK_C)
$(EMU_BUILD)/test_cuda_emu: $(EMU_DIR)/test_cuda_emu.cc $(EMU_KOBJS) $(EMU_RT) $(EMU_HDRS)
	$(CXX) $(EMU_CXXFLAGS) -Iinclude -Isrc -Itests $< $(EMU_KOBJS) $(EMU_RT) -o $@ $(LDLIBS)

.PHONY: cuda-emu cuda-emu-test cuda-emu-asan cuda-emu-ci
cuda-emu: $(addprefix $(EMU_BUILD)/,$(EMU_PROGS) gpu_bench_decode libsinkstream.so)

# the library with the emulated CUDA backend, for the Deno tests (SINKSTREAM_LIB=...)
$(EMU_BUILD)/libsinkstream.so: $(EMU_LIB_OBJS)
	$(CXX) -shared $(EMU_CXXFLAGS) -o $@ $^ $(LDLIBS) -ldl

cuda-emu-test: cuda-emu
	@set -e; for t in $(EMU_PROGS); do echo "== $(EMU_BUILD)/$$t (CUDA emulator)"; \
	  env SS_SHARED=$(SHARED) $(EMU_ENV) ./$(EMU_BUILD)/$$t; done

# What CI runs (deno task test): every pass and batch with blocks and threads in reverse order;
# the batch-8 scenario of both attention lane layouts with every launch run in both orders and
# compared (SSEMU_RACECHECK: races); one batch-8 pass under ASan + UBSan (out-of-bounds kernel
# accesses, misaligned vector loads).
cuda-emu-ci:
	$(MAKE) --no-print-directory cuda-emu-test EMU_ENV="SSEMU_ORDER=reverse SS_GPU_TEST_STEPS=16"
	env SS_SHARED=$(SHARED) SSEMU_RACECHECK=1 SS_GPU_TEST_STEPS=3 SS_GPU_TEST_BATCHES=8 \
	  SS_GPU_TEST_PASSES=fp16-own-kernels,fp16-hd128-gqa2 ./$(EMU_BUILD)/gpu_test_cuda_vs_cpu
	$(MAKE) --no-print-directory cuda-emu-asan \
	  EMU_ENV="SS_GPU_TEST_STEPS=2 SS_GPU_TEST_PASSES=fp16-own-kernels SS_GPU_TEST_BATCHES=8"

cuda-emu-asan:
	$(MAKE) --no-print-directory BUILD=$(BUILD)/asan OPTFLAGS="-O1 -g -fno-omit-frame-pointer" \
	  SANFLAGS="-fsanitize=address,undefined -fno-sanitize-recover=undefined" cuda-emu-test
.SECONDARY: $(patsubst ../kernels/%.cu,$(EMU_BUILD)/kernels/%.cc,$(wildcard ../kernels/*.cu))
