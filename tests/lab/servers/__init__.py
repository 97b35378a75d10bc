"""The lab's server processes, each started with `ip netns exec <ns> python3 -m ...` by the lab:
inet's honest resolvers and web sites (`inet`), the ISP's resolver, blockpage and intercepting TLS
server in the censor namespace (`isp`), and the censor's on-path injector (`onpath`, scapy).
"""
