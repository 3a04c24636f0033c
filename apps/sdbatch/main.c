/* sdbatch: the command-line program. Dispatches to the subcommands. */
#include "cli.h"

#include <stdio.h>
#include <string.h>

static void print_usage(FILE *out) {
  fprintf(out,
          "sdbatch %s - Stable Diffusion batch renderer\n"
          "\n"
          "Usage: sdbatch <command> [options]\n"
          "\n"
          "Commands:\n"
          "  run              render a YAML job into its output file (one process or MPI ranks)\n"
          "  render           render one image to a PNG file\n"
          "  tokenize         print a prompt's 77 CLIP token ids\n"
          "  make-demo-model  write a random-weight model in diffusers layout\n"
          "  make-shapes      write the synthetic shapes dataset (PNGs and captions)\n"
          "  inspect          summarise a job's output file (.h5)\n"
          "  export           write an output file's images as PNGs or contact sheets\n"
          "  convert          write a model as an original single-file checkpoint\n"
          "  bench            time the pipeline's stages and report FLOP rates\n"
          "  train            fine-tune a model's UNet on instance images (DreamBooth)\n"
          "  train-demo       train the shapes demo model from scratch\n"
          "\n"
          "'sdbatch <command> --help' describes a command's options.\n",
          SDBATCH_VERSION);
}

int main(int argc, char **argv) {
  if (argc < 2) {
    print_usage(stderr);
    return 2;
  }
  const char *command = argv[1];
  if (strcmp(command, "--help") == 0 || strcmp(command, "-h") == 0 ||
      strcmp(command, "help") == 0) {
    print_usage(stdout);
    return 0;
  }
  if (strcmp(command, "--version") == 0) {
    printf("sdbatch %s\n", SDBATCH_VERSION);
    return 0;
  }
  if (strcmp(command, "run") == 0)
    return cmd_run(argc - 1, argv + 1);
  if (strcmp(command, "render") == 0)
    return cmd_render(argc - 1, argv + 1);
  if (strcmp(command, "tokenize") == 0)
    return cmd_tokenize(argc - 1, argv + 1);
  if (strcmp(command, "make-demo-model") == 0)
    return cmd_make_demo_model(argc - 1, argv + 1);
  if (strcmp(command, "make-shapes") == 0)
    return cmd_make_shapes(argc - 1, argv + 1);
  if (strcmp(command, "inspect") == 0)
    return cmd_inspect(argc - 1, argv + 1);
  if (strcmp(command, "export") == 0)
    return cmd_export(argc - 1, argv + 1);
  if (strcmp(command, "convert") == 0)
    return cmd_convert(argc - 1, argv + 1);
  if (strcmp(command, "train") == 0)
    return cmd_train(argc - 1, argv + 1);
  if (strcmp(command, "train-demo") == 0)
    return cmd_train_demo(argc - 1, argv + 1);
  if (strcmp(command, "bench") == 0)
    return cmd_bench(argc - 1, argv + 1);
  fprintf(stderr, "sdbatch: unknown command '%s'\n\n", command);
  print_usage(stderr);
  return 2;
}
