# SPDX-License-Identifier: MIT
# bufpool_library(<name>): adds one of bufpool's installed libraries, static or shared as
# BUILD_SHARED_LIBS says, with the properties every one of them shares.
#
# Shared builds export only what the module interfaces declare: the interface units push
# default visibility over their purview, and everything else (the internal partitions, the
# implementation units' helpers, inline functions, the standard library's instantiations)
# stays inside the library. The installed libraries find each other through $ORIGIN, so the
# installation can be moved.
function(bufpool_library name)
  add_library(${name})
  set_target_properties(${name} PROPERTIES
    VERSION ${PROJECT_VERSION}
    # 0.x releases may change the ABI with every minor version; the package version file
    # accepts the same minor version only (SameMinorVersion), and so does the loader.
    SOVERSION ${PROJECT_VERSION_MAJOR}.${PROJECT_VERSION_MINOR}
    CXX_VISIBILITY_PRESET hidden
    VISIBILITY_INLINES_HIDDEN ON
    INSTALL_RPATH "$ORIGIN")
endfunction()
