"""The Linux escape tests that mean the same on macOS, run against Seatbelt on a Mac.

The test bodies are the ones in tests/escapes/ (imported, not copied): the same attack, the same
check on the host afterwards, the same unguarded control. What differs on macOS, or exists only
there, is in test_seatbelt.py beside this file. Run on a Mac with

    tools/test tests/macos

Not imported, because they test Linux mechanisms or Linux-only behaviour: tests/escapes/
test_kernel.py (Linux syscalls), test_only_child.py (/proc/self/status), test_lifetime.py and
test_processes.py (/proc; their macOS versions are in test_seatbelt.py), the placeholder records
of test_protected.py, the private /tmp (macOS gives a private $TMPDIR instead: test_seatbelt.py),
deny-read directories that "look empty" (on macOS they cannot be listed at all), and the memory
limit (refused on macOS).
"""

from __future__ import annotations

import sys

import pytest

# ruff: noqa: F401 - every name imported here is a test (or a fixture one needs) to collect
from tests.escapes.test_deny_read import (
    test_aws_credentials_unreadable,
    test_cat_ssh_key,
    test_copy_secret_into_workspace,
    test_custom_deny_read_dir_and_file,
    test_deny_read_from_policy_file,
    test_find_home_for_keys,
    test_grep_home_for_secrets,
    test_netrc_reads_empty,
    test_python_open_key,
)
from tests.escapes.test_limits import (
    test_cpu_seconds,
    test_file_size,
    test_file_size_in_the_library,
    test_file_size_is_reported,
    test_output_cap_in_the_library,
)
from tests.escapes.test_links import (
    test_create_file_through_symlink_to_outside_dir,
    test_dotdot_traversal,
    test_dotdot_traversal_to_home,
    test_hard_link_to_outside_file,
    test_hard_link_to_protected_file,
    test_symlink_to_deny_read_dir,
    test_symlink_to_deny_read_file,
    test_write_through_symlink_created_inside,
    test_write_through_symlink_to_outside_file,
)
from tests.escapes.test_network_off import (
    servers,
    test_dns_query_to_localhost_resolver,
    test_ssh_agent_socket,
    test_tcp_to_localhost_server,
    test_udp_to_localhost_server,
)
from tests.escapes.test_protected import (
    test_create_git_config_worktree,
    test_create_missing_protected_name,
    test_delete_git_config,
    test_edit_git_config,
    test_existing_protected_dir_read_only,
    test_git_commondir_redirect,
    test_git_config_command,
    test_git_init_without_repository_fails,
    test_gitdir_file_into_workspace,
    test_gitdir_file_into_workspace_commondir,
    test_linked_worktree_commondir_rewrite,
    test_linked_worktree_main_repo_outside,
    test_linked_worktree_main_repo_writable,
    test_overwrite_existing_git_hook,
    test_rename_hooks_dir_away,
    test_replace_git_by_renaming_it,
    test_rm_rf_git,
    test_subdirectory_repository,
    test_subdirectory_repository_replaced_by_renaming_its_directory,
    test_submodule_gitdir_replaced_by_renaming_modules,
    test_write_git_hook,
)
from tests.escapes.test_readonly_profile import (
    test_modify_delete_rename_workspace_file,
    test_python_write_workspace,
    test_write_outside_still_refused,
    test_write_workspace_file,
)
from tests.escapes.test_rename_chmod_delete import (
    test_chmod_outside_file,
    test_chown_outside_file_to_own_uid,
    test_move_outside_file_in,
    test_move_workspace_file_out,
    test_rename_outside_file_in_place,
    test_rm_outside_file,
    test_rmdir_outside_dir,
    test_touch_outside_times,
    test_truncate_outside_file,
)
from tests.escapes.test_write_outside import (
    test_write_file_outside_workspace,
    test_write_shell_rc_in_home,
)
from tests.test_workflow import (
    test_git_add_all_and_commit,
    test_git_branch_stash_and_merge,
    test_git_commit_in_existing_repository,
    test_git_commit_in_linked_worktree,
    test_git_commit_in_separate_gitdir_checkout,
    test_git_status_clean_inside,
    test_multiprocessing_pool,
    test_subprocesses_and_pipes,
)

pytestmark = pytest.mark.skipif(
    sys.platform != "darwin",
    reason="Seatbelt escape tests need macOS: run `tools/test tests/macos` on a Mac",
)
