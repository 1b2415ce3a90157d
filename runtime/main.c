/*
 * main.c - the eddy binary: wires the command line to the concepts.
 */
#include "cli.h"

int main(int argc, char **argv) {
  return eddy_cli_main(argc, argv);
}
