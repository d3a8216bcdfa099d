DOCUMENTATION = r"""
name: playbook_command
short_description: The ansible-playbook command line of the running play, as a list of arguments
description:
  - Returns the arguments the running C(ansible-playbook) was started with (the controller's C(sys.argv)), so
    a playbook can tell its user the exact command to run next, for example the rollback command of
    C(playbooks/upgrade.yml) (see O(kserve_ansible.serving.kserve_upgrade_plan#module:command_line)).
  - Takes no terms. Use C(query) or C(wantlist=true) to get the list.
"""

EXAMPLES = r"""
- name: Show how this playbook was run
  ansible.builtin.debug:
    msg: "{{ query('kserve_ansible.serving.playbook_command') | join(' ') }}"
"""

RETURN = r"""
_raw:
  description: The command line's arguments, the program first.
  type: list
  elements: str
"""

import sys

from ansible.plugins.lookup import LookupBase


class LookupModule(LookupBase):
    def run(self, terms, variables=None, **kwargs):
        return [str(arg) for arg in sys.argv]
