"""Network identity: which network (ASN, AS name, country) the probe and its resolver are in, and
whether the probe seems to run through a VPN or proxy.

Sources, best first: the control test helper's view of the client (it sees the address the probe's
traffic arrives from, and which resolver asks on its behalf), then an offline IP-to-ASN database in
MaxMind DB format that the user points at. With neither, every field stays None ("unknown"):
nothing is guessed. The probe's own addresses are collected for the Scrubber (probe.privacy) and
are never part of the NetworkInfo that is stored.

    helper_view ... HelperView: what the test helper saw of the probe and its resolver
    mmdb .......... AsnDatabase: MaxMind DB files read together
    local ......... read_local_network: interfaces, tunnels, wide routes, egress, proxy variables
    identify ...... identify_network: the sources merged, own addresses, VPN signals
    fields ........ ASN / AS name / country / address values checked as the sources give them
"""
