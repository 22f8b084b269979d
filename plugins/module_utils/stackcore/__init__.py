"""stackcore: the pure-Python core shipped to hosts inside our modules and reused by the controller.

Never imports AnsibleModule. Modules import it as ``ansible.module_utils.stackcore.<mod>``;
the controller as ``stackcore.<mod>``. Inside the package, import siblings relatively.
"""
