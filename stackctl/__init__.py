"""stackctl: the controller of a small private cloud (compute on libvirt, driven through Ansible).

The package is laid out by layer: ``cli`` and ``commands/`` parse and render, ``workflows/``
hold the typed operations, ``scheduler``/``journal``/``runner`` are the machinery underneath and
``models``/``db`` the state. Heavy libraries (SQLAlchemy, rich, PyYAML, ansible-runner) are
imported inside the functions that need them so that ``stackctl --help`` stays fast.
"""

__version__ = "0.1.0"
