/* SPDX-License-Identifier: MIT */
/* The subcommands: each is `nkvm NAME ARGS...`, returns the process exit status. */
#ifndef NKVM_CMD_CMD_H
#define NKVM_CMD_CMD_H

int cmd_balloon(int argc, char **argv);
int cmd_img(int argc, char **argv);
int cmd_list(int argc, char **argv);
int cmd_pause(int argc, char **argv);
int cmd_resume(int argc, char **argv);
int cmd_stat(int argc, char **argv);
int cmd_run(int argc, char **argv);
int cmd_setup(int argc, char **argv);
int cmd_version(int argc, char **argv);

#endif
