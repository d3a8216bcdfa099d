"""Stand-in for the pip bootstrap script ansible-test downloads (get-pip-<version>.py).

ansible-test creates its virtual environments without pip and fetches get-pip from
ci-files.testing.ansible.com, which this project's machines cannot reach; it also looks for the
script in ~/.ansible/test/cache/get_pip_<version>.py first. `collections/sanity.sh` puts this file
there. Same command line as get-pip (pip install arguments, plus get-pip's own --no-setuptools /
--no-wheel): bootstrap the pip bundled with Python (ensurepip), then let it install the requested pip
(and the rest) from the package index.
"""

import ensurepip
import os
import subprocess
import sys

GET_PIP_ONLY = {"--no-setuptools", "--no-wheel"}

if __name__ == "__main__":
    environment = dict(os.environ)  # ensurepip turns pip's configuration files off in os.environ
    ensurepip.bootstrap(upgrade=True)
    args = [arg for arg in sys.argv[1:] if arg not in GET_PIP_ONLY]
    sys.exit(subprocess.call([sys.executable, "-m", "pip", "install", *args], env=environment))
