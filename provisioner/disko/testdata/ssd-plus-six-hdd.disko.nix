{
  disko.devices = builtins.fromJSON ''
    {
      "disk": {
        "sda": {
          "content": {
            "partitions": {
              "sda1": {
                "content": {
                  "extraArgs": [
                    "-n",
                    "EFI"
                  ],
                  "format": "vfat",
                  "mountOptions": [
                    "umask=0077"
                  ],
                  "mountpoint": "/boot",
                  "type": "filesystem"
                },
                "size": "1G",
                "type": "EF00"
              },
              "sda2": {
                "content": {
                  "type": "lvm_pv",
                  "vg": "main"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sda",
          "type": "disk"
        },
        "sdb": {
          "content": {
            "partitions": {
              "sdb1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdb",
          "type": "disk"
        },
        "sdc": {
          "content": {
            "partitions": {
              "sdc1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdc",
          "type": "disk"
        },
        "sdd": {
          "content": {
            "partitions": {
              "sdd1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdd",
          "type": "disk"
        },
        "sde": {
          "content": {
            "partitions": {
              "sde1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sde",
          "type": "disk"
        },
        "sdf": {
          "content": {
            "partitions": {
              "sdf1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdf",
          "type": "disk"
        },
        "sdg": {
          "content": {
            "partitions": {
              "sdg1": {
                "content": {
                  "name": "md0",
                  "type": "mdraid"
                },
                "size": "100%"
              }
            },
            "type": "gpt"
          },
          "device": "/dev/sdg",
          "type": "disk"
        }
      },
      "lvm_vg": {
        "large": {
          "lvs": {
            "data": {
              "content": {
                "extraArgs": [
                  "-L",
                  "data"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/data",
                "type": "filesystem"
              },
              "size": "100G"
            },
            "swap": {
              "content": {
                "extraArgs": [
                  "--label",
                  "swap"
                ],
                "type": "swap"
              },
              "size": "128G"
            }
          },
          "type": "lvm_vg"
        },
        "main": {
          "lvs": {
            "home": {
              "content": {
                "extraArgs": [
                  "-L",
                  "home"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/home",
                "type": "filesystem"
              },
              "size": "16G"
            },
            "slash": {
              "content": {
                "extraArgs": [
                  "-L",
                  "slash"
                ],
                "format": "ext4",
                "mountOptions": [
                  "relatime"
                ],
                "mountpoint": "/",
                "type": "filesystem"
              },
              "size": "50G"
            }
          },
          "type": "lvm_vg"
        }
      },
      "mdadm": {
        "md0": {
          "content": {
            "type": "lvm_pv",
            "vg": "large"
          },
          "level": 6,
          "type": "mdadm"
        }
      }
    }
  '';
}
